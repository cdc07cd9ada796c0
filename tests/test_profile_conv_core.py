"""benchmarks/profile_conv_core.cpp, the C++ profiling loop that round after round of docs/KERNELS.md quotes: built
against the static core library that the editable install leaves in build/, it times a small layer and prints its
line, and it refuses arguments that make no layer (a stride of 0 divided by zero before it checked them)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def profiler(tmp_path_factory):
    libs = sorted(ROOT.glob("build/*/libhorq_core.a"), key=lambda p: p.stat().st_mtime)
    assert libs, "no build/*/libhorq_core.a: run `make install` (the editable install builds it)"
    cxx = shutil.which("g++")
    assert cxx, "g++ not found"
    out = tmp_path_factory.mktemp("pcc") / "profile_conv_core"
    subprocess.run([cxx, "-O1", "-std=c++17", f"-I{ROOT / 'csrc'}", str(ROOT / "benchmarks" / "profile_conv_core.cpp"),
                    str(libs[-1]), "-pthread", "-o", str(out)], check=True, capture_output=True)
    return out


def test_times_a_layer(profiler):
    r = subprocess.run([str(profiler), "64", "8", "2", "0.05", "1", "0", "3", "generic"], capture_output=True,
                       text=True, env={"HORQ_NUM_THREADS": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.match(r"\d+ calls, fastest \d+\.\d{4} ms, median \d+\.\d{4} ms, of which input quantization "
                    r"\d+\.\d{4} \(median\) \(generic, 3x3 kernel, stride 1, 64 -> 64 channels, 8x8, order 2", r.stdout)


def test_times_an_order1_call_whole_at_two_threads(profiler):
    # the runtime's route (conv_layer): on a path with the pixel image (avx2, avx512) the pixel pass runs inside the
    # GEMM's job, and the input quantization is not timed apart; the generic path times it
    r = subprocess.run([str(profiler), "64", "8", "1", "0.05"], capture_output=True, text=True,
                       env={"HORQ_NUM_THREADS": "2"}, timeout=120)
    assert r.returncode == 0, r.stderr
    m = re.match(r"\d+ calls, fastest \d+\.\d{4} ms, median \d+\.\d{4} ms, of which input quantization (.+) \((\w+), "
                 r"3x3 kernel, stride 1, 64 -> 64 channels, 8x8, order 1, batch 1, 2 thread\(s\)", r.stdout)
    assert m, r.stdout
    assert (m[1] == "inside the GEMM's job") == (m[2] != "generic"), r.stdout


BAD = {"stride0": ["64", "8", "1", "0.05", "1", "0", "3", "generic", "0", "0"], "channels0": ["0", "8"],
       "size0": ["64", "0"], "order9": ["64", "8", "9"], "order0": ["64", "8", "0"],
       "batch0": ["64", "8", "1", "0.05", "0"],
       "kernel0": ["64", "4", "1", "0.05", "1", "0", "0"], "seconds0": ["64", "8", "1", "0"],
       "outputs0": ["64", "8", "1", "0.05", "1", "0", "3", "generic", "0", "1", "0", "0"]}


@pytest.mark.parametrize("args", BAD.values(), ids=BAD.keys())
def test_refuses_arguments_that_make_no_layer(profiler, args):
    r = subprocess.run([str(profiler), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "must be positive" in r.stderr
