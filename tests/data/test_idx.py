import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import IMAGES_MAGIC, LABELS_MAGIC, idx_bytes, write
from horq.data import DATASETS, DatasetError, load
from horq.data.idx import read_idx


def expected_x(images, name):
    info = DATASETS[name]
    return ((images.astype(np.float32) / 255 - info.mean[0]) / info.std[0])[:, None]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_round_trip(make_idx, name, gz):
    root, arrays = make_idx(name, gz=gz)
    for split in ("train", "test"):
        ds = load(name, split, root=root)
        images, labels = arrays[split]
        assert ds.x.dtype == np.float32 and ds.x.shape == (len(labels), 1, 28, 28)
        assert ds.y.dtype == np.int64
        np.testing.assert_array_equal(ds.y, labels)
        np.testing.assert_allclose(ds.x, expected_x(images, name), rtol=1e-6, atol=1e-6)
        assert ds.num_classes == 10 and ds.name == name and len(ds.classes) == 10


def test_limit_and_env_root(make_idx, monkeypatch):
    root, arrays = make_idx("mnist")
    monkeypatch.setenv("HORQ_DATA", str(root))
    ds = load("mnist", "train", limit=2)
    assert len(ds) == 2
    np.testing.assert_array_equal(ds.y, arrays["train"][1][:2])


def test_raw_preferred_over_gz_and_both_accepted(make_idx):
    root, arrays = make_idx("mnist", gz=True)
    # A raw copy next to the .gz wins; write a different raw label file to see which one is read.
    labels = (arrays["train"][1] + 1) % 10
    write(root / "mnist" / "train-labels-idx1-ubyte", idx_bytes(labels, LABELS_MAGIC))
    np.testing.assert_array_equal(load("mnist", root=root).y, labels)


def corrupt(root, file, transform, gz=False):
    path = root / "mnist" / (file + (".gz" if gz else ""))
    data = path.read_bytes()
    if gz:
        data = gzip.decompress(data)
    data = transform(data)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


CASES = {
    "truncated images": ("train-images-idx3-ubyte", lambda b: b[:-5], "truncated"),
    "truncated header": ("train-images-idx3-ubyte", lambda b: b[:10], "truncated header"),
    "trailing bytes": ("train-labels-idx1-ubyte", lambda b: b + b"\0\0\0", "3 trailing bytes"),
    "wrong magic": ("train-images-idx3-ubyte", lambda b: struct.pack(">I", 2049) + b[4:], "wrong magic"),
    "labels magic on images": ("train-labels-idx1-ubyte", lambda b: struct.pack(">I", 2051) + b[4:], "wrong magic"),
    "bad label": ("train-labels-idx1-ubyte", lambda b: b[:-1] + bytes([10]), "labels outside 0..9"),
    "count mismatch": (
        "train-labels-idx1-ubyte", lambda b: struct.pack(">II", 2049, 6) + b[8:-1], "7 images but"),
    "zero dims": ("train-images-idx3-ubyte", lambda b: b[:4] + struct.pack(">III", 0, 28, 28), "bad dimensions"),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_files_name_the_file(make_idx, case, gz):
    file, transform, message = CASES[case]
    root, _ = make_idx("mnist", gz=gz)
    corrupt(root, file, transform, gz=gz)
    with pytest.raises(DatasetError, match=message) as info:
        load("mnist", "train", root=root)
    assert file in str(info.value)


def test_wrong_image_size(make_idx):
    root, _ = make_idx("mnist")
    images = np.zeros((7, 27, 28), np.uint8)
    write(root / "mnist" / "train-images-idx3-ubyte", idx_bytes(images, IMAGES_MAGIC))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: images are \(27, 28\)"):
        load("mnist", root=root)


@pytest.mark.parametrize("how", ["garbage", "cut"])
def test_corrupt_gzip(make_idx, how):
    root, _ = make_idx("mnist", gz=True)
    path = root / "mnist" / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(b"not a gzip file at all" if how == "garbage" else data[: len(data) // 2])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: corrupt gzip"):
        load("mnist", root=root)


def test_missing_file_says_how_to_fetch(make_idx):
    root, _ = make_idx("fashion-mnist")
    (root / "fashion-mnist" / "t10k-labels-idx1-ubyte").unlink()
    load("fashion-mnist", "train", root=root)  # the other split is unaffected
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte") as info:
        load("fashion-mnist", "test", root=root)
    assert f"horq data fetch fashion-mnist --dest {root}" in str(info.value)


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load("imagenet", root=tmp_path)
    with pytest.raises(DatasetError, match="unknown split"):
        load("mnist", "val", root=tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_any_damage_is_a_dataset_error(tmp_path, data):
    # Truncating or flipping bytes of a valid file either still parses to the right shape or raises
    # DatasetError, never anything else (no IndexError, no giant allocation).
    good = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), IMAGES_MAGIC)
    cut = data.draw(st.integers(0, len(good) + 4))
    blob = bytearray(good[:cut] + b"\x07" * max(0, cut - len(good)))
    for pos in data.draw(st.lists(st.integers(0, max(len(blob) - 1, 0)), max_size=3)):
        if blob:
            blob[pos] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "fuzz-idx3-ubyte"
    path.write_bytes(bytes(blob))
    try:
        array = read_idx(path, IMAGES_MAGIC)
    except DatasetError as exc:
        assert str(path) in str(exc)
    else:
        assert array.size == len(blob) - 16


def test_padded_variant_reads_its_source_and_pads_with_background(make_idx):
    """fashion-mnist-32: Fashion-MNIST's files, two black pixels added on every side before standardizing."""
    from horq.data import is_present

    root, arrays = make_idx("fashion-mnist")
    assert is_present("fashion-mnist-32", root)
    ds = load("fashion-mnist-32", "test", root=root)
    images, labels = arrays["test"]
    assert ds.x.shape == (len(labels), 1, 32, 32) and ds.name == "fashion-mnist-32"
    np.testing.assert_array_equal(ds.y, labels)
    np.testing.assert_allclose(ds.x[:, :, 2:30, 2:30], expected_x(images, "fashion-mnist"), rtol=1e-6, atol=1e-6)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    background = (0 - DATASETS["fashion-mnist"].mean[0]) / DATASETS["fashion-mnist"].std[0]
    np.testing.assert_allclose(ds.x[:, 0][:, border], background, rtol=1e-6)
    (root / "fashion-mnist" / "t10k-labels-idx1-ubyte").unlink()
    assert not is_present("fashion-mnist-32", root)
    with pytest.raises(DatasetError, match=f"horq data fetch fashion-mnist --dest {root}"):
        load("fashion-mnist-32", "test", root=root)
