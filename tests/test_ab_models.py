"""benchmarks/ab_models.py: a yardstick model exported once, each build imported as horq._core in processes of its own
and the builds in turn, every model and order reported for each build with the later builds' ratio to the first (here
the installed build twice, mnist-cnn on the generic path, few calls); bad arguments refused."""

import importlib.util
import re
from pathlib import Path

import pytest

from horq import kernels

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ab_models", ROOT / "benchmarks" / "ab_models.py")
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)


def _builds(tmp_path):
    core = Path(kernels._core.__file__)
    a, b = tmp_path / "a.so", tmp_path / "b.so"
    a.write_bytes(core.read_bytes())
    b.write_bytes(core.read_bytes())
    return a, b


def test_both_builds_report_every_model_and_order(tmp_path, capsys):
    a, b = _builds(tmp_path)
    args = [str(a), str(b), "--models", "mnist-cnn", "--orders", "1", "2", "--rounds", "2", "--calls", "2",
            "--path", "generic"]
    assert ab.main(args) == 0
    out = capsys.readouterr().out
    assert "1 thread(s) (pinned to CPU" in out and "kernel path generic, 2 rounds of 2 calls" in out
    for order in (1, 2):
        line = next(x for x in out.splitlines() if x.strip().startswith(f"mnist-cnn order {order}:"))
        assert re.search(r"a\.so [0-9.]+ \([0-9.]+-[0-9.]+\) \| b\.so [0-9.]+ \([0-9.]+-[0-9.]+, [0-9.]+x\)", line)


@pytest.mark.parametrize("args, message", [
    (["{a}"], "at least two builds"),
    (["{a}", "{missing}"], "no such file"),
    (["{a}", "{b}", "--models", "resnet-50"], "unknown model 'resnet-50'"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, args, message):
    a, b = _builds(tmp_path)
    names = {"a": str(a), "b": str(b), "missing": str(tmp_path / "none.so")}
    with pytest.raises(SystemExit) as exc:
        ab.main([x.format(**names) for x in args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_each_run_imports_its_build(tmp_path):
    """A file that is not an extension makes its runs fail, naming the build: the child imports the file it is given,
    not the installed extension."""
    a, _ = _builds(tmp_path)
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not an extension")
    with pytest.raises(SystemExit) as exc:
        ab.main([str(a), str(bad), "--models", "mnist-cnn", "--rounds", "1", "--calls", "1", "--path", "generic"])
    assert "bad.so: the run of mnist-cnn order 1 failed" in str(exc.value)
