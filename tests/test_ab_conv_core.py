"""benchmarks/ab_conv_core.py: the builds run in turn, round after round, with the layer's arguments and thread count,
and each build's figures are the medians of its own runs (stand-in builds: scripts that print a timing line)."""

import importlib.util
import stat
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ab_conv_core", ROOT / "benchmarks" / "ab_conv_core.py")
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)


def _build(tmp_path, name, medians, log, quantization="0.00$k (median)"):
    """A stand-in build whose k-th run reports medians[k] (and logs its arguments and thread count)."""
    counter = tmp_path / f"{name}.n"
    counter.write_text("0")
    script = tmp_path / name
    cases = "\n".join(f"  {k}) m={m};;" for k, m in enumerate(medians))
    script.write_text(f"""#!/bin/sh
k=$(cat {counter}); echo $((k + 1)) > {counter}
echo "{name} $* T=$HORQ_NUM_THREADS" >> {log}
case $k in
{cases}
esac
echo "100 calls, fastest 0.0100 ms, median $m ms, of which input quantization {quantization} (avx512)"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_builds_alternate_and_keep_their_own_medians(tmp_path, capsys):
    log = tmp_path / "log"
    a = _build(tmp_path, "a", ["0.0500", "0.0900", "0.0600"], log)
    b = _build(tmp_path, "b", ["0.0400", "0.0410", "0.0100"], log)
    assert ab.main([a, b, "--layer", "64 8 1 0.3", "--threads", "2", "--rounds", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{a}: 0.0600  quantization 0.0010  fastest 0.0100" in out
    assert f"{b}: 0.0400  quantization 0.0010  fastest 0.0100" in out
    assert log.read_text().splitlines() == ["a 64 8 1 0.3 T=2", "b 64 8 1 0.3 T=2"] * 3


def test_a_build_without_a_timing_line_is_an_error(tmp_path):
    script = tmp_path / "quiet"
    script.write_text("#!/bin/sh\necho nothing\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(SystemExit, match="no timing line"):
        ab.main([str(script), "--layer", "64 8 1", "--rounds", "1"])


def test_a_build_that_times_calls_whole(tmp_path, capsys):
    # more than one thread: the input quantization runs inside the GEMM's job, profile_conv_core times the call whole
    log = tmp_path / "log"
    a = _build(tmp_path, "a", ["0.0500", "0.0300"], log, quantization="inside the GEMM's job")
    b = _build(tmp_path, "b", ["0.0400", "0.0410"], log)
    assert ab.main([a, b, "--layer", "64 8 1", "--threads", "2", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{a}: 0.0400  quantization -  fastest 0.0100" in out
    assert f"{b}: 0.0405  quantization 0.0005  fastest 0.0100" in out
