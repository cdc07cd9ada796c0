"""Portable build (issue 12): the C++ core builds without the x86 kernels for a non-x86 target, and its C++
test (csrc/tests/test_kernels.cpp: every path built and runnable against scalar references) passes.

* aarch64: cross-compiled with Debian's ``aarch64-linux-gnu-g++`` (package g++-aarch64-linux-gnu) and run
  under ``qemu-aarch64`` (package qemu-user); skipped, naming the missing package, where they are absent
  (``make test`` installs them when it runs as root with apt-get).
* the host: the same test built natively, which runs every kernel path this CPU has.

Both builds are the CMake project alone (HORQ_BUILD_PYTHON=OFF, HORQ_BUILD_TESTS=ON), one target, in a
temporary directory: about 10 s each on 2 cores.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = "horq_test_kernels"
CROSS_CXX = "aarch64-linux-gnu-g++"
QEMUS = ("qemu-aarch64", "qemu-aarch64-static")
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"  # where Debian's cross toolchain keeps the aarch64 libc/libstdc++
EM_AARCH64 = 183  # ELF e_machine of an aarch64 binary
BUILD_TIMEOUT_S = 300
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")
X86_FLAG = re.compile(r"-mavx|_avx2\.cpp|_avx512\.cpp")

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not on PATH (README: CMake >= 3.18)")


def _build(build_dir: Path, *cmake_args: str) -> str:
    """Configures and builds the C++ test alone; returns the configure output and the verbose build log."""
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build_dir), *generator, "-DCMAKE_BUILD_TYPE=Release",
         "-DHORQ_BUILD_PYTHON=OFF", "-DHORQ_BUILD_TESTS=ON", *cmake_args],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    build = subprocess.run(
        ["cmake", "--build", str(build_dir), "--target", TARGET, "-j2", "-v"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    log = configure.stdout + build.stdout + build.stderr
    assert build.returncode == 0, log[-6000:]
    return log


def _check_run(cmd: list[str]) -> str:
    """Runs the C++ test; asserts it exits 0 with a last line 'N passed, 0 failed' (N > 0)."""
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    out = run.stdout + run.stderr
    lines = out.strip().splitlines()
    summary = SUMMARY.match(lines[-1]) if lines else None
    assert run.returncode == 0 and summary and int(summary[1]) > 0 and summary[2] == "0", out[-6000:]
    return out


def _qemu() -> str | None:
    return next((q for q in QEMUS if shutil.which(q)), None)


def test_aarch64_cross_build_runs_generic_kernels(tmp_path):
    if shutil.which(CROSS_CXX) is None:
        pytest.skip(f"{CROSS_CXX} not found (Debian package g++-aarch64-linux-gnu; `make test` installs it as root)")
    qemu = _qemu()
    if qemu is None:
        pytest.skip("qemu-aarch64 not found (Debian package qemu-user; `make test` installs it as root)")
    toolchain = tmp_path / "aarch64.cmake"
    toolchain.write_text(
        "set(CMAKE_SYSTEM_NAME Linux)\n"
        "set(CMAKE_SYSTEM_PROCESSOR aarch64)\n"
        f"set(CMAKE_CXX_COMPILER {CROSS_CXX})\n"
        f"set(CMAKE_FIND_ROOT_PATH {AARCH64_SYSROOT})\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\n")
    log = _build(tmp_path / "build", f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
    assert "generic kernels only" in log
    # Before issue 12 every *_avx2.cpp / *_avx512.cpp was compiled with -mavx2 ... and failed here.
    assert not X86_FLAG.search(log), [line for line in log.splitlines() if X86_FLAG.search(line)][:3]
    binary = tmp_path / "build" / TARGET
    header = binary.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_AARCH64
    out = _check_run([qemu, "-L", AARCH64_SYSROOT, str(binary)])
    # The dispatch table lists the generic path alone, and the test checked that avx2/avx512 are refused.
    assert "known paths: generic; testing: generic" in out


def test_host_build_runs_every_available_path(tmp_path):
    log = _build(tmp_path / "build")
    x86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}
    # On x86 the ISA files are built with their flags; elsewhere they are left out.
    assert ("-mavx2" in log) == x86 and ("-mavx512f" in log) == x86
    out = _check_run([str(tmp_path / "build" / TARGET)])
    tested = re.search(r"testing: (.*)", out)[1].split()
    assert tested[-1] == "generic"
    if x86:
        assert "known paths: avx512 avx2 generic;" in out
    print(f"C++ kernel test on the host, paths {tested}: {out.strip().splitlines()[-1]}")

