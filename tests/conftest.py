"""Suite-wide: shared helpers (tests/agreement.py) importable from every test folder, and the CPU and kernel
paths of the run printed at its start and end (the suite must pass on any x86-64, so a log says which)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

_EXERCISED = pytest.StashKey[set]()


@pytest.fixture(autouse=True)
def _cpu_unless_marked_cuda(request, monkeypatch):
    """Every test runs as on CI, on the CPU, also on a machine with a GPU (where `--device auto` and `horq demo`
    would otherwise train on it, with other rounding and speed); tests marked `cuda` (tests/nn/test_cuda.py)
    see the GPU. Subprocesses get CUDA_VISIBLE_DEVICES empty; this process, torch.cuda.is_available False."""
    if request.node.get_closest_marker("cuda"):
        return
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    torch = sys.modules.get("torch")
    if torch is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="session")
def record_kernel_path(request):
    """Notes a kernel path that a test forced (tests/kernels' `path` fixture), for the closing summary."""
    return request.config.stash.setdefault(_EXERCISED, set()).add


def _kernel_info():
    try:
        from horq import kernels
    except ImportError as exc:  # the suite still reports what it can
        return None, f"native core not importable: {exc}"
    return kernels.info(), None


def pytest_report_header(config):
    info, err = _kernel_info()
    if info is None:
        return [f"horq: {err}"]
    forced = os.environ.get("HORQ_KERNEL")
    return [
        f"horq: CPU {info['cpu']}",
        f"horq: kernel paths built {', '.join(info['known'])}; this CPU runs {', '.join(info['available'])}; "
        f"default path {info['in_use']}" + (f" (forced by HORQ_KERNEL={forced})" if forced else ""),
    ]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    info, err = _kernel_info()
    if info is None:
        terminalreporter.write_line(f"horq: {err}")
        return
    exercised = config.stash.get(_EXERCISED, set())
    skipped = [p for p in info["known"] if p not in exercised]
    ran = ", ".join(p for p in info["known"] if p in exercised) or "none"
    terminalreporter.write_line(
        f"horq: kernel paths exercised by forced-path tests: {ran}"
        + (f"; not exercised in this run: {', '.join(skipped)}" if skipped else "")
        + f"; every other native test ran the default path {info['in_use']} on {info['cpu']}")
