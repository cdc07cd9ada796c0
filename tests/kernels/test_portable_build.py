"""Portable build (issue 12) and every x86-64 CPU: the C++ core builds without the x86 kernels for a non-x86
target, and on x86 it runs on CPUs without AVX-512, without AVX2 and without AVX.

* aarch64: cross-compiled with Debian's ``aarch64-linux-gnu-g++`` (package g++-aarch64-linux-gnu) and run
  under ``qemu-aarch64`` (package qemu-user); skipped, naming the missing package, where they are absent
  (``make test`` installs them when it runs as root with apt-get).
* the host: the same test built natively, which runs every kernel path this CPU has; then the same binary, and the
  installed extension, under ``qemu-x86_64`` (package qemu-user) as older CPU models: each must load, offer exactly
  the paths its instruction sets allow and pass on them (before this check, the library failed to load on any CPU
  without AVX: a table of the avx2 file was built by its own AVX code when the library loaded).
* the ISA files keep their code to themselves: no weak symbol an avx2 or avx512 file compiles is shared with another
  file in a form that uses the file's instruction sets (csrc/core/isa_local.h says why).

Both builds are the CMake project alone (HORQ_BUILD_PYTHON=OFF, HORQ_BUILD_TESTS=ON), one target, in a
temporary directory: about 10 s each on 2 cores.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
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
X86 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}
X86_64 = platform.machine().lower() in {"x86_64", "amd64"}
QEMUS_X86 = ("qemu-x86_64", "qemu-x86_64-static")
# qemu's x86-64 CPU models (its TCG emulation has no AVX-512), what each lacks, and the paths the core must offer there.
EMULATED_CPUS = [
    ("qemu64", "the x86-64 baseline: no POPCNT, no AVX", ["generic"]),
    ("Nehalem", "POPCNT and SSE4.2, no AVX", ["generic"]),
    ("SandyBridge", "AVX without AVX2", ["generic"]),
    ("Haswell", "AVX2, FMA, BMI2 and POPCNT", ["avx2", "generic"]),
    ("Haswell,-fma", "AVX2 without FMA", ["generic"]),
    ("Haswell,-bmi2", "AVX2 without BMI2", ["generic"]),
]
# Instructions beyond the x86-64 baseline in `objdump -d` (AT&T) lines: VEX/EVEX-encoded (v...), AVX-512 mask
# registers (k...), BMI1/BMI2, POPCNT, LZCNT. (tzcnt is left out: GCC emits `rep bsf` for the baseline, which objdump
# shows as tzcnt and older CPUs run as bsf.)
ISA_INSTRUCTION = re.compile(r"^\s*[0-9a-f]+:\s+(v[a-z0-9]+|k[a-z]+[bwdq]|andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|"
                             r"pext|rorx|sarx|shlx|shrx|popcnt|lzcnt)\s")
ISA_OBJECT = re.compile(r"_(avx2|avx512)\.cpp\.o$")

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
    """Runs the C++ test; asserts it exits 0 with a last line 'N passed, 0 failed' (N > 0) on its standard output
    (qemu writes its warnings about CPU features it does not emulate to standard error)."""
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    out = run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
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


@pytest.fixture(scope="module")
def host_build(tmp_path_factory) -> tuple[Path, str]:
    """The C++ test built for the host, once for this module: its build directory and build log."""
    build_dir = tmp_path_factory.mktemp("host") / "build"
    return build_dir, _build(build_dir)


def test_host_build_runs_every_available_path(host_build):
    build_dir, log = host_build
    # On x86 the ISA files are built with their flags; elsewhere they are left out.
    assert ("-mavx2" in log) == X86 and ("-mavx512f" in log) == X86
    out = _check_run([str(build_dir / TARGET)])
    tested = re.search(r"testing: (.*)", out)[1].split()
    assert tested[-1] == "generic"
    if X86:
        assert "known paths: avx512 avx2 generic;" in out
    print(f"C++ kernel test on the host, paths {tested}: {out.strip().splitlines()[-1]}")


def _needs_x86_qemu() -> str:
    if not X86_64:
        pytest.skip("the host is not x86-64: its CPU models are emulated only for an x86-64 build")
    qemu = next((q for q in map(shutil.which, QEMUS_X86) if q), None)
    if qemu is None:
        pytest.skip("qemu-x86_64 not found (Debian package qemu-user; `make test` installs it as root)")
    return qemu


@pytest.mark.parametrize("model, lacks, paths", EMULATED_CPUS, ids=[m for m, _, _ in EMULATED_CPUS])
def test_host_build_on_older_cpus(host_build, model, lacks, paths):
    """The C++ test on an emulated CPU (`lacks` says what it has): it loads, offers exactly `paths` and passes on
    each of them."""
    qemu = _needs_x86_qemu()
    out = _check_run([qemu, "-cpu", model, str(host_build[0] / TARGET)])
    assert f"known paths: avx512 avx2 generic; testing: {' '.join(paths)}" in out, out[-3000:]


# Run by the emulated CPU's Python: the paths it offers, then every one of them against horq.reference on an
# order-1 and an order-2 convolution with padding, a float convolution with its pool and a linear layer.
EXTENSION_CHECK = """
import json, sys
import numpy as np
print("numpy started", flush=True)
from horq import kernels, reference
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 64, 9, 9)).astype(np.float32)
w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
pw = kernels.pack_weights(w)
xl = rng.standard_normal((2, 200)).astype(np.float32)
wl = rng.standard_normal((10, 200)).astype(np.float32)
pl = kernels.pack_weights(wl)
xs = rng.standard_normal((1, 3, 40, 40)).astype(np.float32)
ws = rng.standard_normal((8, 3, 7, 7)).astype(np.float32)
errors = {}
for k in kernels.info()["available"]:
    for order in (1, 2):
        y = kernels.conv2d(x, pw, order=order, padding=1, kernel=k)
        r = reference.horq_conv2d(x.astype(np.float64), w.astype(np.float64), order=order, padding=1)
        errors[f"{k} conv o{order}"] = float(np.abs(y - r).max() / np.abs(r).max())
        y = kernels.linear(xl, pl, order=order, kernel=k)
        r = reference.horq_linear(xl.astype(np.float64), wl.astype(np.float64), order=order)
        errors[f"{k} linear o{order}"] = float(np.abs(y - r).max() / np.abs(r).max())
    y = kernels.float_conv2d(xs, ws, stride=2, padding=3, kernel=k)
    xp = np.pad(xs.astype(np.float64), ((0, 0), (0, 0), (3, 3), (3, 3)))
    r = np.einsum("ocij,cyxij->oyx", ws.astype(np.float64),
                  np.lib.stride_tricks.sliding_window_view(xp[0], (7, 7), axis=(1, 2))[:, ::2, ::2])[None]
    errors[f"{k} float conv"] = float(np.abs(y - r).max() / np.abs(r).max())
print(json.dumps({"available": kernels.info()["available"], "errors": errors}))
"""


# The models of real CPUs from x86-64-v2 on (numpy needs it; the BLAS that numpy loads picks its kernels by CPU model,
# and stops on a Haswell without FMA).
EXTENSION_CPUS = [c for c in EMULATED_CPUS if c[0] in ("Nehalem", "SandyBridge", "Haswell")]


@pytest.mark.parametrize("model, lacks, paths", EXTENSION_CPUS, ids=[m for m, _, _ in EXTENSION_CPUS])
def test_extension_on_older_cpus(model, lacks, paths):
    """The installed extension under this Python on an emulated CPU: it loads, offers `paths`, and each computes what
    horq.reference does."""
    qemu = _needs_x86_qemu()
    run = subprocess.run([qemu, "-cpu", model, sys.executable, "-c", EXTENSION_CHECK], capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT_S)
    if "numpy started" not in run.stdout:
        pytest.skip(f"this Python or its numpy does not start on {model} ({lacks}): {run.stderr.strip()[-300:]}")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["available"] == paths
    bad = {name: e for name, e in result["errors"].items() if not e < 1e-5}
    assert not bad and len(result["errors"]) == 5 * len(paths), result


def _symbols(obj: Path) -> list[tuple[str, str]]:
    out = subprocess.run(["nm", "--defined-only", str(obj)], capture_output=True, text=True, check=True).stdout
    return [(p[1], p[2]) for p in (line.split() for line in out.splitlines()) if len(p) == 3]


def _isa_lines(obj: Path, symbol: str | None = None) -> list[str]:
    cmd = ["objdump", "-d", "--no-show-raw-insn", str(obj)]
    if symbol:
        cmd.insert(3, f"--disassemble={symbol}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if ISA_INSTRUCTION.match(line)]


def test_isa_files_share_no_code(host_build, tmp_path):
    """No avx2 or avx512 object of the core runs code when the library loads (a static initializer runs on every
    CPU), and no weak symbol that such an object defines with its instruction sets is defined by another object too:
    the linker keeps one copy of a weak symbol for every caller, so the generic path (or the avx2 path) could run
    it on a CPU without them."""
    if not X86:
        pytest.skip("the host is not x86: the build has no ISA files")
    missing = [tool for tool in ("ar", "nm", "objdump") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found (Debian package binutils)")
    subprocess.run(["ar", "x", str(host_build[0] / "libhorq_core.a")], cwd=tmp_path, check=True)
    objects = sorted(tmp_path.glob("*.o"))
    isa = [o for o in objects if ISA_OBJECT.search(o.name)]
    assert len(isa) >= 10 and len(objects) > len(isa), [o.name for o in objects]
    # The check below can see what it looks for: the avx512 GEMM's object is full of such instructions.
    assert len(_isa_lines(next(o for o in isa if o.name.startswith("gemm_outer_avx512")))) > 1000
    weak: dict[str, list[Path]] = {}
    problems = []
    for obj in objects:
        for kind, name in _symbols(obj):
            if kind in "WVu":
                weak.setdefault(name, []).append(obj)
            if obj in isa and name.startswith("_GLOBAL__sub_I_"):
                problems.append(f"{obj.name}: a static initializer ({name})")
    for name, where in weak.items():
        for obj in where if len(where) > 1 else []:
            found = _isa_lines(obj, name) if obj in isa else []
            if found:
                others = ", ".join(o.name for o in where if o != obj)
                problems.append(f"{obj.name}: {name} (also in {others}): {found[0].strip()}")
    assert not problems, "\n".join(problems)
