"""Thread counts of everything a model runs on: the native kernels and numpy's BLAS.

numpy's matmuls (float linear layers, float convolutions the native core does not take, order-0 binary layers)
run on its BLAS library, whose thread pool is separate from the kernels'. Left at its default it starts one
thread per core even for a 128x27 by 27x1024 product; on a machine busy with other work those threads wait for
each other and the product takes 16 ms instead of 0.12 ms (measured on the project's shared 2-core machine).
And after each product its idle threads keep spinning for a while (OpenBLAS), holding the cores the kernels'
own threads need in the layers that follow: a binary ResNet-18 at 224x224, order 1, 2 threads, ran its
float stem 2.4x slower than at 1 thread after the previous call's 1000-way classifier (`python
benchmarks/profile_model.py --model resnet18-224 --threads 2`, docs/KERNELS.md round 10). A runtime told to use
n threads therefore sets the kernels' pool to n and the BLAS pool to ``blas`` threads, 1 unless asked (the
runtime's BLAS products are a network's first and last layers at inference batch sizes), through
``threadpoolctl`` (a dependency).
"""

from __future__ import annotations

import contextlib

import threadpoolctl


def _kernels():
    try:
        import horq.kernels as kernels  # noqa: PLC0415 (optional: the extension may be missing)
    except ImportError:
        return None
    return kernels


def _check(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be an integer >= 1, got {n!r}")
    return n


def set_num_threads(n: int, *, blas: int = 1) -> None:
    """Uses ``n`` threads in the native kernels and ``blas`` in numpy's BLAS from now on (process-wide).

    Raises:
        ValueError: ``n`` or ``blas`` is not an integer >= 1.
    """
    _check(n)
    _check(blas)
    kernels = _kernels()
    if kernels is not None:
        kernels.set_num_threads(n)
    threadpoolctl.threadpool_limits(limits=blas, user_api="blas")


@contextlib.contextmanager
def num_threads(n: int, *, blas: int = 1):
    """Context manager: ``n`` threads for the kernels and ``blas`` for numpy's BLAS inside, the previous counts
    restored after.

    Example:
        >>> with horq.runtime.num_threads(2):
        ...     logits = model(x)
    """
    _check(n)
    _check(blas)
    kernels = _kernels()
    before = kernels.get_num_threads() if kernels is not None else None
    limits = threadpoolctl.threadpool_limits(limits=blas, user_api="blas")
    try:
        with limits:
            if kernels is not None:
                kernels.set_num_threads(n)
            yield
    finally:
        if kernels is not None:
            kernels.set_num_threads(before)
