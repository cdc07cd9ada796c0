"""The AVX-512 kernels' logic on a CPU without AVX-512, and the emulation checked against the hardware.

csrc/core/bgemm_avx512.cpp, quantize_avx512.cpp, gemm_outer_avx512.cpp, sign_gemm_avx512.cpp,
weight_rows_avx512.cpp, float_conv_avx512.cpp and pool_rows_avx512.cpp are compiled against a plain-C++ stand-in
for the intrinsics they use (avx512_emulation/immintrin.h) and checked by avx512_emulation/harness.cpp against the
portable kernels or a scalar reference on awkward sizes: row tails of 1..7 words, edge tiles, n > 65535, orders
1..8, channel tails; pack_pixels, the NHWC copy, the outer-product GEMM, the backward pass's float-by-sign product,
fold and rebuilt columns, the weight binarizer and its gradient, the float convolution's row kernel and its Winograd
tiles (against the generic path's scalar tiles) and max pooling's rows bit for bit, with guard values around every
output, NaN/Inf/-0.0 inputs, sub-blocks of the GEMM whose columns span images, and inputs that end at an
inaccessible page (no over-read). Where the CPU has AVX-512 the same harness is also built
against the real <immintrin.h>, so the emulation is validated against the hardware.

Both builds use -ffp-contract=off: the kernels' epilogue must round every multiply and add separately to
match the scalar epilogue bit for bit, and the harness has inputs at float ties that a fused multiply-add
would round differently.
"""

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from horq import _core

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "avx512_emulation"
CORE = ROOT / "csrc" / "core"
SOURCES = ["bgemm_avx512.cpp", "quantize_avx512.cpp", "gemm_outer_avx512.cpp", "sign_gemm_avx512.cpp",
           "weight_rows_avx512.cpp", "float_conv_avx512.cpp", "bgemm_generic.cpp", "quantize_generic.cpp",
           "sign_gemm_generic.cpp", "weight_rows_generic.cpp", "float_conv_generic.cpp", "conv.cpp", "gemm_driver.cpp",
           "float_conv.cpp",
           "pool.cpp", "pool_generic.cpp", "pool_rows_avx512.cpp", "threadpool.cpp"]
AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vpopcntdq", "-mfma"]


def _compiler():
    cxx = shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the AVX-512 harness")
    return cxx


def _build_and_run(cxx, exe, flags):
    # One compiler process per source, as many at a time as there are CPUs: the build is most of the test's time
    # (under emulation float_conv_avx512.cpp alone took 75-90 s on the 2-vCPU development VM, the serial build of all
    # of them 100-150 s), then one link.
    sources = [HERE / "harness.cpp", HERE / "intrinsics_check.cpp", *(CORE / s for s in SOURCES)]

    def compile_one(src: Path) -> tuple[subprocess.CompletedProcess, Path]:
        obj = exe.parent / f"{src.stem}.o"
        cmd = [cxx, "-O1", "-std=c++17", "-ffp-contract=off", *flags, f"-I{ROOT / 'csrc'}", "-c", str(src), "-o",
               str(obj)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300), obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        built = list(pool.map(compile_one, sources))
    for res, _ in built:
        assert res.returncode == 0, res.stderr[-4000:]
    link = subprocess.run([cxx, *(str(obj) for _, obj in built), "-pthread", "-o", str(exe)], capture_output=True,
                          text=True, timeout=120)
    assert link.returncode == 0, link.stderr[-4000:]
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    # A negative return code is a signal: a fault on a guard page means a kernel read past its input.
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), (out.returncode, out.stdout + out.stderr)


def test_avx512_kernels_emulated(tmp_path):
    _build_and_run(_compiler(), tmp_path / "avx512_emulated", [f"-I{HERE}"])


def test_avx512_harness_on_hardware(tmp_path):
    # The same checks with the real intrinsics: where both pass, the emulation agrees with the hardware.
    if "avx512" not in _core.available_kernels():
        pytest.skip("AVX-512 (F+BW+VL+DQ+VPOPCNTDQ) is not available on this CPU: the emulation was not "
                    "checked against hardware")
    cxx = _compiler()
    probe = subprocess.run([cxx, *AVX512_FLAGS, "-x", "c++", "-E", "-"], input="", capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{cxx} does not take the AVX-512 flags {' '.join(AVX512_FLAGS)}")
    _build_and_run(cxx, tmp_path / "avx512_hardware", AVX512_FLAGS)


def test_avx512_availability_is_reported():
    # Make the situation explicit in the test log on machines like the development one.
    if "avx512" not in _core.available_kernels():
        pytest.skip("AVX-512 (F+BW+VL+DQ+VPOPCNTDQ) is not available on this CPU: the avx512 path ran only "
                    "under emulation (test_avx512_kernels_emulated), not on hardware")
    assert _core.available_kernels()[0] == "avx512"
