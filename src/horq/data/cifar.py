"""Loads the CIFAR-10 "python version" batches without trusting pickle.

Each batch is a pickled dict ``{b"data": uint8 (10000, 3072), b"labels": [int], ...}``; a row holds 1024 red,
then 1024 green, then 1024 blue values, each plane in row-major order, so ``row.reshape(3, 32, 32)`` is CHW.

``pickle.load`` would run any callable a file names, so batches go through :class:`SafeUnpickler`, whose
``find_class`` resolves only the handful of numpy names an ndarray's pickle needs (plus ``_codecs.encode``,
which Python 3 emits for ``bytes`` at protocol 2) and refuses everything else. None of them can run
arbitrary code: ``_reconstruct``/``_frombuffer`` build arrays of an allowed class and dtype, and object
arrays are rejected after loading.
"""

from __future__ import annotations

import codecs
import io
import pickle
import struct
from pathlib import Path

import numpy as np

from horq.data.errors import DatasetError

IMAGE_SHAPE = (3, 32, 32)
ROW_SIZE = 3 * 32 * 32


def _numpy_name(module: str, name: str):
    # numpy 2 moved numpy.core to numpy._core; old pickles (CIFAR-10 is from 2009) name the old path.
    core = getattr(np, "_core", None) or np.core
    table = {
        ("multiarray", "_reconstruct"): core.multiarray._reconstruct,
        ("multiarray", "scalar"): core.multiarray.scalar,
        ("numeric", "_frombuffer"): getattr(core.numeric, "_frombuffer", None),
    }
    for prefix in ("numpy.core.", "numpy._core."):
        if module.startswith(prefix):
            return table.get((module[len(prefix):], name))
    return None


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds plain containers and numeric numpy arrays."""

    ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str):
        found = self.ALLOWED.get((module, name)) or _numpy_name(module, name)
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return found


def safe_load(path: Path) -> object:
    """Unpickles ``path`` with :class:`SafeUnpickler`; bytes keys are kept (``encoding="bytes"``).

    Raises:
        DatasetError: the file is not a pickle, or names anything outside the allowlist.
    """
    try:
        data = Path(path).read_bytes()
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"{path}: refused or corrupt pickle: {exc}") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error) as exc:
        raise DatasetError(f"{path}: corrupt pickle ({type(exc).__name__}: {exc})") from exc


def load_batch(path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Loads one batch file as ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.

    Raises:
        DatasetError: a missing key, wrong dtype or shape, or labels out of range.
    """
    batch = safe_load(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_SIZE:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: b'data' must be uint8 (N, {ROW_SIZE}), got {what}")
    if not isinstance(labels, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in labels):
        raise DatasetError(f"{path}: b'labels' must be a list of ints")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels outside 0..{num_classes - 1}")
    return data.reshape((-1,) + IMAGE_SHAPE), labels


def load_label_names(path: Path) -> tuple[str, ...]:
    """Reads ``batches.meta``'s ``b'label_names'``."""
    meta = safe_load(path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, bytes) for n in names):
        raise DatasetError(f"{path}: no b'label_names' list in batches.meta")
    return tuple(n.decode("ascii", "replace") for n in names)
