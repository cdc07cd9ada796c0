"""The one exception ``horq.data`` raises for bad or missing data."""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset file is missing, corrupt or not what it claims to be; the message names the file."""


def missing(path: Path, dataset: str, root: Path) -> DatasetError:
    """The error for a file that is not there, saying how to get it."""
    return DatasetError(
        f"{dataset}: missing file {path}; fetch it with `horq data fetch {dataset} --dest {root}` "
        f"(or set HORQ_DATA to the folder that holds {dataset}/)"
    )
