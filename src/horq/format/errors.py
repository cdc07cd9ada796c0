"""Errors raised for a ``.horq`` file that cannot be trusted. All derive from :class:`HorqFormatError`
(itself a ``ValueError``), so a caller can catch one type; tests and tools can tell the causes apart."""

from __future__ import annotations


class HorqFormatError(ValueError):
    """A ``.horq`` file (or a graph about to be saved) is not a valid packed model."""


class TruncatedFileError(HorqFormatError):
    """The file ends before its header or its tensor data does."""


class HeaderError(HorqFormatError):
    """The container header is oversized, not JSON, or describes tensors inconsistently."""


class VersionError(HorqFormatError):
    """The file is not a horq file, or was written by an unsupported format version."""


class ChecksumError(HorqFormatError):
    """The SHA-256 recorded in the metadata does not match the graph and tensor bytes (corruption)."""


class GraphError(HorqFormatError):
    """The graph is malformed: bad node, attribute, or reference to a node that does not precede it."""


class UnknownOpError(GraphError):
    """A node names an op this version of the format does not define."""


class TensorError(HorqFormatError):
    """Tensors do not fit the graph: missing, unreferenced, wrong dtype, wrong shape or bad values."""
