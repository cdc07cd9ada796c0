"""horq.runtime thread control: the kernels' pool and numpy's BLAS pool move together and are restored."""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl

import horq.kernels as kernels
import horq.runtime as rt
from horq.runtime import threads


def _blas_threads():
    info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert info, "numpy's BLAS was not found by threadpoolctl"
    return [i["num_threads"] for i in info]


def test_num_threads_sets_and_restores_both_pools():
    before_k, before_b = kernels.get_num_threads(), _blas_threads()
    with rt.num_threads(1):
        assert kernels.get_num_threads() == 1
        assert _blas_threads() == [1] * len(before_b)
    assert kernels.get_num_threads() == before_k and _blas_threads() == before_b
    with rt.num_threads(2):  # BLAS stays at one thread unless asked
        assert kernels.get_num_threads() == 2
        assert _blas_threads() == [1] * len(before_b)
    with rt.num_threads(1, blas=2):
        assert kernels.get_num_threads() == 1
        assert _blas_threads() == [2] * len(before_b)
    assert kernels.get_num_threads() == before_k and _blas_threads() == before_b


def test_set_num_threads_leaves_blas_at_one_unless_asked():
    before_k, before_b = kernels.get_num_threads(), _blas_threads()
    try:
        rt.set_num_threads(2)
        assert kernels.get_num_threads() == 2 and _blas_threads() == [1] * len(before_b)
        rt.set_num_threads(1, blas=2)
        assert kernels.get_num_threads() == 1 and _blas_threads() == [2] * len(before_b)
    finally:
        kernels.set_num_threads(before_k)
        threadpoolctl.threadpool_limits(limits=before_b[0], user_api="blas")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_thread_counts_are_checked(bad):
    with pytest.raises(ValueError, match="threads"):
        rt.set_num_threads(bad)
    with pytest.raises(ValueError, match="threads"), rt.num_threads(bad):
        pass
    with pytest.raises(ValueError, match="threads"):
        rt.set_num_threads(1, blas=bad)


def test_calls_blas_limit_is_one_thread_until_a_count_is_chosen():
    """A native model's call runs its BLAS products on one thread and restores the count, while no count was chosen
    (set_num_threads / num_threads; tests/conftest.py starts every test with none chosen); inside num_threads(...,
    blas=) the chosen count stays, and set_num_threads chooses for good."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with threads.calls_blas_limit():
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {2}
        with rt.num_threads(1, blas=2), threads.calls_blas_limit():
            assert set(_blas_threads()) == {2}
        assert not threads._chosen  # num_threads leaves the choice as it found it
        with threads.calls_blas_limit():
            assert set(_blas_threads()) == {1}
        rt.set_num_threads(kernels.get_num_threads(), blas=2)
        assert threads._chosen
        with threads.calls_blas_limit():
            assert set(_blas_threads()) == {2}


def _model_file(tmp_path, model, name, shape):
    from horq.nn.export import export

    export(model.eval(), tmp_path / name, input_shape=shape)
    return tmp_path / name


@pytest.mark.skipif(not kernels.info()["available"], reason="no native kernel path")
def test_native_calls_limit_blas_where_the_plan_has_products(tmp_path, monkeypatch):
    """native.blas_batch: a plan whose float 1x1 convolution over 64 channels is a numpy product limits BLAS at any
    batch; one whose float layers all run in the core (a 3x3 convolution over 3 channels, a small linear layer) only
    above FLOAT_LINEAR_MAX_ROWS rows; the numpy backend never (no kernel threads to collide with)."""
    from torch import nn

    from horq.nn import HORQConv2d
    from horq.runtime import native

    calls = []

    class Recorder:
        def __enter__(self):
            calls.append(1)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(rt, "calls_blas_limit", Recorder)
    pointwise = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 1), nn.Flatten())
    in_core = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), HORQConv2d(8, 8, 3, padding=1, order=1),
                            nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    for model, name, want in ((pointwise, "p.horq", 1), (in_core, "c.horq", native.FLOAT_LINEAR_MAX_ROWS + 1)):
        path = _model_file(tmp_path, model, name, (3, 16, 16))
        m = rt.load(path, backend="native")
        assert m._blas_batch == (want if m._steps[0].op == "conv2d" and kernels.info()["in_use"] in
                                 native.FLOAT_CONV_PATHS else 1)
        for batch in (1, 17):
            calls.clear()
            m(np.zeros((batch, 3, 16, 16), np.float32))
            assert calls == ([1] if batch >= m._blas_batch else [])
        assert rt.load(path, backend="numpy")._blas_batch is None
