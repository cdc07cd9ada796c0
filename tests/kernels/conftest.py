"""Shared fixtures: every test that takes `path` runs once per kernel path the library has, forced through
the `kernel=` argument; paths this CPU cannot run are skipped with the reason spelled out."""

import pytest

from horq import _core, kernels

SKIP_REASONS = {
    "avx512": "AVX-512 path needs AVX512F+BW+VL+DQ+VPOPCNTDQ (and the AVX2 path's sets), which this CPU does not "
    "report (it is compiled and dispatch-tested, but cannot run here)",
    "avx2": "AVX2 path needs AVX2+FMA+BMI2+POPCNT, which this CPU does not report",
}


@pytest.fixture(params=list(_core.known_kernels()))
def path(request, record_kernel_path):
    name = request.param
    if name not in _core.available_kernels():
        pytest.skip(SKIP_REASONS.get(name, f"{name} is not available on this CPU"))
    record_kernel_path(name)
    return name


@pytest.fixture(autouse=True)
def _restore_threads_and_env(monkeypatch):
    monkeypatch.delenv(kernels.KERNEL_ENV, raising=False)
    before = kernels.get_num_threads()
    yield
    kernels.set_num_threads(before)
