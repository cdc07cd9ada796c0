"""horq.runtime thread control: the kernels' pool and numpy's BLAS pool move together and are restored."""

from __future__ import annotations

import pytest
import threadpoolctl

import horq.kernels as kernels
import horq.runtime as rt


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
