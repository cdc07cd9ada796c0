"""benchmarks/read_streams.cpp, whose figures docs/KERNELS.md round 41 and quantize_avx512.cpp quote: it builds with
the default flags of any x86-64 compiler, reads an image once per stream count down to one stream, and refuses
arguments that make no image."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    cxx = shutil.which("g++")
    assert cxx, "g++ not found"
    out = tmp_path_factory.mktemp("streams") / "read_streams"
    subprocess.run([cxx, "-O2", "-std=c++17", str(ROOT / "benchmarks" / "read_streams.cpp"), "-o", str(out)],
                   check=True, capture_output=True)
    return out


def test_reads_with_every_stream_count(reader):
    r = subprocess.run([str(reader), "12", "200", "1", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("12 channels x 200 pixels (9 KB), 1 MB written before each read, median of 3 reads")
    counts = [int(m[1]) for m in (re.match(r"\s+(\d+) streams: +\d+\.\d us \(\d+\.\d GB/s\)$", s) for s in lines[1:])]
    assert counts == [12, 6, 3, 2, 1]


@pytest.mark.parametrize("args", [["0"], ["8", "0"], ["8", "8", "1", "0"]])
def test_refuses_an_empty_image(reader, args):
    r = subprocess.run([str(reader), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "must be positive" in r.stderr
