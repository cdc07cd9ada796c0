"""The held-out split: a fixed, seeded subset of a dataset's *training* split, for choices made after training
(``horq analyze frontier`` picks per-layer orders on it) without looking at the test split.

``holdout_indices(n, k)`` is the first ``k`` entries of one fixed permutation of ``range(n)``
(``numpy.random.default_rng(HOLDOUT_SEED)``), sorted. A seeded subset rather than the last ``k`` samples
because some training splits are sorted by class (mnist-5k's is: its last 1,000 images are all 7, 8 and 9).
Being a prefix of one permutation, the held-out set of a smaller ``k`` lies inside that of a larger one: a
model trained with ``horq train --holdout K`` has never seen the held-out samples of any ``k <= K``.
"""

from __future__ import annotations

import numpy as np

#: Seed of the permutation that defines every held-out split (changing it changes every split).
HOLDOUT_SEED = 20171022


def holdout_indices(n: int, k: int) -> np.ndarray:
    """Sorted indices (int64) of the ``k`` held-out samples among ``n`` training samples.

    Raises:
        ValueError: unless ``0 < k < n``.
    """
    if not 0 < k < n:
        raise ValueError(f"a held-out split of {k} samples needs 1 <= k < {n} (the training split's size)")
    return np.sort(np.random.default_rng(HOLDOUT_SEED).permutation(n)[:k]).astype(np.int64)


def split_holdout(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)``: sorted indices of the training samples left to train on, and the held-out ones."""
    held = holdout_indices(n, k)
    keep = np.ones(n, dtype=bool)
    keep[held] = False
    return np.flatnonzero(keep).astype(np.int64), held
