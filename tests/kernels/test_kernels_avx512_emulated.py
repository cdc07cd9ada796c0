"""The AVX-512 kernels' logic on a CPU without AVX-512.

csrc/core/bgemm_avx512.cpp and quantize_avx512.cpp are compiled against a plain-C++ stand-in for the few
intrinsics they use (avx512_emulation/immintrin.h) and checked against the portable kernels on awkward
sizes (row tails of 1..7 words, edge tiles, n > 65535, orders 1..8, channel tails). This covers tiles,
masks and accumulation; the real instructions run in the normal `path` tests wherever the CPU has AVX-512.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from horq import _core

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "avx512_emulation"


def test_avx512_kernels_emulated(tmp_path):
    cxx = shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the AVX-512 emulation harness")
    core = ROOT / "csrc" / "core"
    exe = tmp_path / "avx512_emulated"
    cmd = [cxx, "-O1", "-std=c++17", f"-I{ROOT / 'csrc'}", f"-I{HERE}", str(HERE / "harness.cpp"),
           str(core / "bgemm_avx512.cpp"), str(core / "quantize_avx512.cpp"), str(core / "bgemm_generic.cpp"),
           str(core / "quantize_generic.cpp"), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stdout + out.stderr


def test_avx512_availability_is_reported():
    # Make the situation explicit in the test log on machines like the development one.
    if "avx512" not in _core.available_kernels():
        pytest.skip("AVX-512 (F+BW+VL+DQ+VPOPCNTDQ) is not available on this CPU: the avx512 path ran only "
                    "under emulation (test_avx512_kernels_emulated), not on hardware")
    assert _core.available_kernels()[0] == "avx512"
