"""The packed ``.horq`` model file: spec, save, load, validate (numpy and the safetensors library only;
never torch). The format is specified in docs/FORMAT.md; :mod:`horq.format.spec` defines the ops.

Example:
    >>> import horq.format as hf
    >>> f = hf.load("model.horq")          # raises a HorqFormatError subclass on any defect
    >>> f.graph.input_shape, [n.op for n in f.graph.nodes]
"""

from horq.format.container import (
    FORMAT_VERSION,
    MAX_HEADER_BYTES,
    READ_VERSIONS,
    HorqFile,
    build,
    canonical_json,
    content_hash,
    file_kind,
    load,
    parse,
    save,
    validate,
)
from horq.format.errors import (
    ChecksumError,
    GraphError,
    HeaderError,
    HorqFormatError,
    TensorError,
    TruncatedFileError,
    UnknownOpError,
    VersionError,
)
from horq.format.spec import BINARY_OPS, INPUT, OPS, Graph, Node, validate_graph

__all__ = [
    "FORMAT_VERSION", "READ_VERSIONS", "MAX_HEADER_BYTES", "HorqFile", "build", "canonical_json", "content_hash",
    "file_kind", "load", "parse", "save", "validate", "ChecksumError", "GraphError", "HeaderError", "HorqFormatError",
    "TensorError", "TruncatedFileError", "UnknownOpError", "VersionError", "BINARY_OPS", "INPUT", "OPS",
    "Graph", "Node", "validate_graph",
]
