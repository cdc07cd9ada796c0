"""Fixtures that write small datasets in the real on-disk formats (no network, no real data needed)."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file's bytes: big-endian magic, dims, then the uint8 data."""
    array = np.asarray(array, dtype=np.uint8)
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write(path, data: bytes, *, gz: bool = False):
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def make_idx(tmp_path):
    """Writes an IDX dataset ``<tmp>/root/<name>/`` with n_train/n_test examples; returns (root, arrays)."""

    def make(name="mnist", *, n_train=7, n_test=3, gz=False, seed=0):
        rng = np.random.default_rng(seed)
        root = tmp_path / "root"
        arrays = {}
        for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n, dtype=np.uint8)
            write(root / name / f"{prefix}-images-idx3-ubyte", idx_bytes(images, IMAGES_MAGIC), gz=gz)
            write(root / name / f"{prefix}-labels-idx1-ubyte", idx_bytes(labels, LABELS_MAGIC), gz=gz)
            arrays[split] = (images, labels)
        return root, arrays

    return make


def cifar_batch(images: np.ndarray, labels, *, protocol: int = 2, label=b"batch") -> bytes:
    """A batch exactly as the official files lay it out: a dict with bytes keys, rows of 1024 R, G, B."""
    return pickle.dumps(
        {
            b"batch_label": label,
            b"labels": list(labels),
            b"data": np.ascontiguousarray(images.reshape(len(images), 3072), dtype=np.uint8),
            b"filenames": [b"img_%d.png" % i for i in range(len(images))],
        },
        protocol=protocol,
    )


@pytest.fixture
def make_cifar(tmp_path):
    """Writes ``<tmp>/root/cifar10/cifar-10-batches-py/`` with ``per_batch`` images per batch."""

    def make(per_batch=3, *, protocol=2, seed=0):
        rng = np.random.default_rng(seed)
        folder = tmp_path / "root" / "cifar10" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        arrays = {}
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, 10, size=per_batch).tolist()
            (folder / name).write_bytes(cifar_batch(images, labels, protocol=protocol))
            arrays[name] = (images, labels)
        names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
        meta = {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
        return tmp_path / "root", arrays

    return make
