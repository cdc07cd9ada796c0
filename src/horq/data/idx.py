"""Strict reader for the IDX files of MNIST and Fashion-MNIST (raw or gzip-compressed).

IDX layout: a 4-byte big-endian magic ``0x0000 TT NN`` (TT = element type, 0x08 = uint8; NN = number of
dimensions), then NN big-endian uint32 sizes, then the elements. Image files have magic 2051 (uint8, 3 dims)
and label files 2049 (uint8, 1 dim). A file is accepted only if its length is exactly header + elements.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from horq.data.errors import DatasetError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# Far above any real dimension; rejects headers whose product would ask for absurd allocations.
MAX_DIM = 1 << 24


def resolve(directory: Path, name: str) -> Path | None:
    """Returns ``directory/name`` or ``directory/name.gz``, whichever exists (raw first), else None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt gzip data ({exc or type(exc).__name__})") from exc


def read_idx(path: Path, magic: int, *, limit: int | None = None) -> np.ndarray:
    """Reads and validates one uint8 IDX file.

    Args:
        path: the file; a ``.gz`` suffix means gzip-compressed.
        magic: the expected magic number (``IMAGES_MAGIC`` or ``LABELS_MAGIC``).
        limit: keep only the first ``limit`` items (the whole file is still validated).

    Returns:
        A uint8 array shaped by the header's dimensions.

    Raises:
        DatasetError: wrong magic, bad dimensions, or a length that does not match the header.
    """
    data = _read_bytes(Path(path))
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DatasetError(f"{path}: wrong magic number {found} (expected {magic}); not an IDX file of this kind")
    if len(data) < header_size:
        raise DatasetError(f"{path}: truncated header: {len(data)} bytes, need {header_size}")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    if any(d == 0 or d > MAX_DIM for d in dims):
        raise DatasetError(f"{path}: bad dimensions {dims}")
    expected = header_size + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise DatasetError(f"{path}: truncated: {len(data)} bytes, header {dims} needs {expected}")
    if len(data) > expected:
        raise DatasetError(f"{path}: {len(data) - expected} trailing bytes after the {dims} data")
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)
    if limit is not None:
        array = array[:limit]
    return array.copy()
