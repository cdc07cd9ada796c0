"""benchmarks/ab_bgemm.py: each build imported as horq._core in processes of its own, the builds in turn, every shape
of the kernel benchmark reported for both (here the installed build twice, on the generic path, few calls)."""

import importlib.util
import re
from pathlib import Path

import pytest

from horq import kernels

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ab_bgemm", ROOT / "benchmarks" / "ab_bgemm.py")
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)


def test_both_builds_report_every_shape(tmp_path, capsys, monkeypatch):
    core = Path(kernels._core.__file__)
    a, b = tmp_path / "a.so", tmp_path / "b.so"
    a.write_bytes(core.read_bytes())
    b.write_bytes(core.read_bytes())
    tiny = "BGEMM_SIZES\nBGEMM_SIZES = [(8, 128, 6), (4, 64, 3)]\n"
    monkeypatch.setattr(ab, "CHILD", ab.CHILD.replace("BGEMM_SIZES\n", tiny))
    assert ab.main([str(a), str(b), "--rounds", "2", "--calls", "3", "--path", "generic"]) == 0
    out = capsys.readouterr().out
    assert "kernel path generic, 2 rounds of 3 calls" in out
    for shape in ("8x128x6", "4x64x3"):
        line = next(x for x in out.splitlines() if x.strip().startswith(shape + ":"))
        assert re.search(r"a\.so \d+ \(\d+-\d+\) \| b\.so \d+ \(\d+-\d+\)", line)


def test_missing_build_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ab.main([str(tmp_path / "none.so"), str(tmp_path / "none.so")])
    assert exc.value.code == 2
    assert "no such file" in capsys.readouterr().err
