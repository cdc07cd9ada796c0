"""The bit convention of horq, written once for Python (its C++ twin is csrc/core/types.h).

* One bit per value; bit = 1 means the value is -1 (``x < 0``); ``sign(0) = +1`` so 0 packs to bit 0.
* Bits fill each 64-bit word least-significant bit first: value ``i`` of a row lives in word ``i // 64``,
  bit ``i % 64``.
* The unused bits of a row's last word are zero in every operand.
* For two packed rows ``a``, ``b`` of ``n`` values: ``a . b = n - 2 * popcount(a XOR b)``.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64
WORD_DTYPE = np.uint64


def words_for(n: int) -> int:
    """Number of 64-bit words that hold ``n`` bits."""
    return (int(n) + WORD_BITS - 1) // WORD_BITS


def sign(x: np.ndarray) -> np.ndarray:
    """``sign`` with ``sign(0) = +1``, as float32 values in {-1, +1}."""
    return np.where(np.asarray(x) < 0, np.float32(-1.0), np.float32(1.0))


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Packs the signs of ``x`` along its last axis into uint64 words.

    Args:
        x: array of shape ``(..., n)``; NaN has no sign and is rejected.

    Returns:
        uint64 array of shape ``(..., words_for(n))``.

    Raises:
        ValueError: if ``x`` contains NaN.
    """
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating) and np.isnan(x).any():
        raise ValueError("pack_signs: input contains NaN, which has no sign")
    n = x.shape[-1]
    nw = words_for(n)
    bits = (x < 0).astype(np.uint8)
    pad = nw * WORD_BITS - n
    if pad:
        bits = np.concatenate([bits, np.zeros(bits.shape[:-1] + (pad,), np.uint8)], axis=-1)
    # packbits with little bit order gives LSB-first bytes; little-endian byte order makes the words.
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(WORD_DTYPE, copy=False)


def unpack_signs(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_signs`: float32 values in {-1, +1} of shape ``(..., n)``."""
    words = np.ascontiguousarray(np.asarray(words, dtype=WORD_DTYPE))
    nw = words.shape[-1]
    if nw != words_for(n):
        raise ValueError(f"unpack_signs: {nw} words cannot hold exactly {n} values")
    bits = np.unpackbits(words.astype("<u8").view(np.uint8), axis=-1, bitorder="little")[..., :n]
    return np.where(bits == 1, np.float32(-1.0), np.float32(1.0))


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 word."""
    return np.bitwise_count(np.asarray(words, dtype=WORD_DTYPE)).astype(np.int64)


def binary_dot(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Dot products of packed rows (broadcasting over leading axes): ``n - 2 * popcount(a ^ b)``."""
    return n - 2 * popcount(np.bitwise_xor(a, b)).sum(axis=-1)
