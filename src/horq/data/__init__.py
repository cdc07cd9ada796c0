"""Datasets for horq as plain numpy arrays; never imports torch.

``load(name, split)`` returns an :class:`ArrayDataset` whose ``x`` is float32 ``(N, C, H, W)`` already
standardized with the dataset's fixed mean/std and whose ``y`` is int64 ``(N,)``. ``DATASETS`` says what is
known about each dataset; ``fetch`` (also ``horq data fetch``) downloads and verifies the ones that do not
ship with a Python package.
"""

from horq.data.download import fetch
from horq.data.errors import DatasetError
from horq.data.loaders import ArrayDataset, dataset_dir, default_root, is_present, load
from horq.data.registry import DATASETS, DatasetInfo
from horq.data.split import holdout_indices, split_holdout

__all__ = [
    "DATASETS", "ArrayDataset", "DatasetError", "DatasetInfo", "dataset_dir", "default_root", "fetch",
    "holdout_indices", "is_present", "load", "split_holdout",
]
