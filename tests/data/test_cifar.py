import os
import pickle

import numpy as np
import pytest

from conftest import cifar_batch
from horq.data import DATASETS, DatasetError, load
from horq.data.cifar import load_batch, safe_load

BATCHES = "cifar10/cifar-10-batches-py"


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_batches_load_with_chw_layout(make_cifar, protocol):
    root, arrays = make_cifar(per_batch=3, protocol=protocol)
    info = DATASETS["cifar10"]
    train = load("cifar10", "train", root=root)
    assert train.x.shape == (15, 3, 32, 32) and train.x.dtype == np.float32 and train.y.dtype == np.int64
    images = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((arrays[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    np.testing.assert_array_equal(train.y, labels)
    mean = np.array(info.mean, np.float32)[:, None, None]
    std = np.array(info.std, np.float32)[:, None, None]
    np.testing.assert_allclose(train.x, (images / np.float32(255) - mean) / std, rtol=1e-5, atol=1e-5)
    test = load("cifar10", "test", root=root)
    assert test.x.shape == (3, 3, 32, 32)
    assert test.classes[0] == "airplane" and test.classes[9] == "truck"


def test_channel_order_from_the_raw_row(tmp_path):
    # Build the 3072-byte row by hand: bytes 0..1023 red, 1024..2047 green, 2048..3071 blue, each plane
    # row-major. Pixel (h=1, w=2) gets distinct values per channel.
    row = np.zeros(3072, np.uint8)
    row[:1024], row[1024:2048], row[2048:] = 10, 20, 30
    row[0 * 1024 + 1 * 32 + 2], row[1 * 1024 + 1 * 32 + 2], row[2 * 1024 + 1 * 32 + 2] = 200, 150, 100
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": row[None], b"labels": [3]}, protocol=2))
    images, labels = load_batch(path)
    assert images.shape == (1, 3, 32, 32) and labels.tolist() == [3]
    assert images[0, :, 0, 0].tolist() == [10, 20, 30]
    assert images[0, :, 1, 2].tolist() == [200, 150, 100]


def test_fewer_batches_with_limit(make_cifar):
    root, _ = make_cifar(per_batch=4)
    assert len(load("cifar10", root=root, limit=6)) == 6


class SystemCall:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Evaluate:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close() or {{b'data': 0, b'labels': []}}",))


@pytest.mark.parametrize("payload", ["system", "eval", "nested"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = {"system": SystemCall(f"touch {marker}"), "eval": Evaluate(marker)}.get(payload)
    if payload == "nested":  # hidden inside an otherwise valid batch
        evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"filenames": [SystemCall(f"touch {marker}")]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DatasetError, match="refus") as info:
        load_batch(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_object_arrays_rejected(tmp_path):
    path = tmp_path / "data_batch_1"
    data = np.empty((1, 3072), dtype=object)
    data[:] = 1
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0]}, protocol=2))
    with pytest.raises(DatasetError, match="must be uint8"):
        load_batch(path)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((2, 3072), np.uint8)}, "not a CIFAR-10 batch"),
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 0]}, "must be uint8"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 0]}, "must be uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels outside"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, "x"]}, "list of ints"),
        ([1, 2, 3], "not a CIFAR-10 batch"),
    ],
)
def test_bad_batches(tmp_path, batch, message):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=message):
        load_batch(path)


def test_truncated_and_garbage_pickles(tmp_path):
    path = tmp_path / "data_batch_1"
    good = cifar_batch(np.zeros((2, 3, 32, 32), np.uint8), [1, 2])
    for blob in (good[: len(good) // 2], b"\x80\x02garbage", b""):
        path.write_bytes(blob)
        with pytest.raises(DatasetError, match="data_batch_1"):
            safe_load(path)


def test_missing_batch_says_how_to_fetch(make_cifar):
    root, _ = make_cifar()
    (root / BATCHES / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match="data_batch_4") as info:
        load("cifar10", root=root)
    assert "horq data fetch cifar10 --dest" in str(info.value)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_numpy_scalar_labels_load(tmp_path, protocol):
    # Labels stored as numpy integers pickle through numpy's `scalar` reconstructor, which is allowed.
    path = tmp_path / "data_batch_1"
    labels = [np.int64(4), np.int64(7)]
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}, protocol=protocol))
    assert load_batch(path)[1].tolist() == [4, 7]


def test_legacy_numpy_core_module_path(tmp_path):
    # The real batches were pickled in 2009 and name `numpy.core.multiarray`; numpy 2 writes `numpy._core`.
    blob = cifar_batch(np.full((1, 3, 32, 32), 9, np.uint8), [2], protocol=2)
    assert b"numpy._core.multiarray" in blob
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    images, labels = load_batch(path)
    assert images.shape == (1, 3, 32, 32) and int(images.max()) == 9 and labels.tolist() == [2]
