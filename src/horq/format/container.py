"""Reading and writing the ``.horq`` container: a safetensors file whose metadata holds the graph.

The safetensors layout is ``u64 little-endian header length | JSON header | tensor bytes``. The header's
``__metadata__`` has exactly one key, ``"horq"``, whose value is canonical JSON (sorted keys, no spaces)::

    {"format": "horq", "version": 1 | 2 | 3, "sha256": "<hex>", "graph": {...}}

Version 2 adds float16 storage of float tensors, version 3 the ops of ``spec.OP_VERSIONS``; a file is written
with the lowest version that holds it, so older readers still read every file that needs nothing newer.

The structure is checked here before the safetensors library sees the bytes, so every defect maps to a
specific :class:`~horq.format.errors.HorqFormatError` (a library error would be a bare exception).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from horq.bits import WORD_BITS
from horq.fileio import atomic_open
from horq.format.errors import (
    ChecksumError,
    GraphError,
    HeaderError,
    HorqFormatError,
    TensorError,
    TruncatedFileError,
    VersionError,
)
from horq.format.spec import BINARY_OPS, F16, F32, MAX_RANK, U64, Graph, required_version, validate_graph

FORMAT_NAME = "horq"
FORMAT_VERSION = 3
#: Versions this reader accepts; a file may not use what a later version added (docs/FORMAT.md, "Versioning").
READ_VERSIONS = (1, 2, 3)
METADATA_KEY = "horq"
HEADER_LEN_BYTES = 8
#: Largest JSON header accepted; a graph of thousands of nodes fits in far less. Bounds memory on bad input.
MAX_HEADER_BYTES = 16 * 1024 * 1024
_DTYPES: dict[str, np.dtype] = {F32: np.dtype("<f4"), F16: np.dtype("<f2"), U64: np.dtype("<u8")}
_HASH_DOMAIN = b"horq-format-v1\0"
# First bytes of a torch.save file (zip archive, or the legacy pickle with torch's magic number); read as a
# header length, either exceeds MAX_HEADER_BYTES, so recognising them only changes that error's message.
TORCH_MAGICS = (b"PK\x03\x04", b"\x80\x02\x8a\x0a")


#: Bytes read to recognise a file (a ``.horq`` file: the 8-byte header length, then ``{``).
SNIFF_BYTES = 9


def file_kind(path) -> str | None:
    """What a file's first bytes say it is: ``"horq"`` (a packed model: a safetensors header length within
    bounds followed by a JSON object), ``"checkpoint"`` (a ``torch.save`` file), or None (anything else, or
    unreadable). Only a hint for error messages; the loaders do the real checks.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None
    if head[:4] in TORCH_MAGICS:  # a zip archive (torch.save since 1.6) or the legacy pickle format
        return "checkpoint"
    if len(head) > HEADER_LEN_BYTES and head[HEADER_LEN_BYTES:] == b"{":
        if 0 < int.from_bytes(head[:HEADER_LEN_BYTES], "little") <= MAX_HEADER_BYTES:
            return "horq"
    return None


@dataclass(frozen=True)
class HorqFile:
    """A loaded, validated ``.horq`` file: the graph and its tensors (read-only numpy arrays, in their stored
    dtype: uint64 bits, float32 or float16 parameters)."""

    graph: Graph
    graph_json: dict
    tensors: dict
    version: int
    sha256: str


def canonical_json(obj) -> str:
    """The one serialization of a JSON value that horq hashes and writes (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def content_hash(graph_json: dict, tensors: dict) -> str:
    """SHA-256 over the canonical graph JSON and every tensor (by name: dtype, shape, raw little-endian bytes).

    It covers everything a loader interprets except the framing offsets, whose corruption the structural
    checks catch; it does not depend on how safetensors orders the data.
    """
    h = hashlib.sha256(_HASH_DOMAIN)
    g = canonical_json(graph_json).encode()
    h.update(len(g).to_bytes(8, "little") + g)
    for name in sorted(tensors):
        arr = tensors[name]
        dtype = _dtype_name(arr.dtype)
        head = canonical_json([name, dtype, list(arr.shape)]).encode()
        data = np.ascontiguousarray(arr, dtype=_DTYPES[dtype]).tobytes()
        h.update(len(head).to_bytes(8, "little") + head + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _dtype_name(dtype) -> str:
    for name, dt in _DTYPES.items():
        if np.dtype(dtype) == dt or np.dtype(dtype) == dt.newbyteorder("="):
            return name
    raise TensorError(f"unsupported tensor dtype {np.dtype(dtype)} "
                      "(a .horq file holds float32, float16 and uint64 only)")


def file_version(tensors: dict) -> int:
    """The lowest version that can hold ``tensors``: 2 if any is float16, else 1."""
    return 2 if any(_dtype_name(a.dtype) == F16 for a in tensors.values()) else 1


def check_tensor_values(graph: Graph, tensors: dict) -> None:
    """Checks values the graph relies on: finite floats, zero padding bits in packed rows."""
    for name, arr in tensors.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise TensorError(f"tensor {name!r} contains NaN or Inf")
    for node in graph.nodes:
        if node.op not in BINARY_OPS:
            continue
        shape = node.attrs["shape"]
        n = math.prod(shape[1:])
        if n % WORD_BITS:
            last = tensors[node.tensors["bits"]][:, -1]
            if np.any(last >> np.uint64(n % WORD_BITS)):
                raise TensorError(f"node {node.name!r}: padding bits of tensor {node.tensors['bits']!r} are not zero")


def build(graph_json: dict, tensors: dict) -> bytes:
    """Validates ``graph_json`` against ``tensors`` and serializes them to ``.horq`` bytes.

    Raises:
        HorqFormatError: if the graph or tensors are invalid (nothing invalid is ever written).
    """
    import safetensors.numpy

    arrays = {}
    for name, arr in tensors.items():
        if not isinstance(name, str):
            raise TensorError(f"tensor names must be strings, got {name!r}")
        arr = np.asarray(arr)
        arrays[name] = np.ascontiguousarray(arr, dtype=_DTYPES[_dtype_name(arr.dtype)])
    try:
        graph_json = json.loads(canonical_json(graph_json))  # normalizes tuples and rejects NaN
    except (TypeError, ValueError) as exc:
        raise GraphError(f"graph is not JSON-serializable: {exc}") from exc
    graph = validate_graph(graph_json, {k: (_dtype_name(v.dtype), v.shape) for k, v in arrays.items()})
    check_tensor_values(graph, arrays)
    meta = {
        "format": FORMAT_NAME,
        "version": max(file_version(arrays), required_version(graph_json)),
        "sha256": content_hash(graph_json, arrays),
        "graph": graph_json,
    }
    return safetensors.numpy.save(arrays, metadata={METADATA_KEY: canonical_json(meta)})


def save(path, graph_json: dict, tensors: dict) -> None:
    """Writes a ``.horq`` file atomically (:func:`horq.fileio.atomic_open`: temporary file, fsync, rename).

    A failure at any point leaves no file under ``path`` (and an existing file there untouched).

    Args:
        path: destination file.
        graph_json: the graph (see :mod:`horq.format.spec`).
        tensors: ``{name: float32, float16 or uint64 array}``; float16 stores float parameters in half the
            bytes (the runtime computes in float32 either way).

    Raises:
        HorqFormatError: if the graph or tensors are invalid.
        OSError: if the file cannot be written.
    """
    data = build(graph_json, tensors)
    with atomic_open(path, "wb") as f:
        _write_all(f, data)


def _write_all(f, data: bytes) -> None:
    f.write(data)


def _parse_header(data: bytes):
    if len(data) < HEADER_LEN_BYTES:
        raise TruncatedFileError(
            f"truncated file: {len(data)} bytes, shorter than the {HEADER_LEN_BYTES}-byte header length"
        )
    hlen = int.from_bytes(data[:HEADER_LEN_BYTES], "little")
    if hlen > MAX_HEADER_BYTES and data[:4] in TORCH_MAGICS:
        raise VersionError(
            "not a .horq file: it starts like a PyTorch checkpoint (torch.save); pack it first with "
            "`horq export CHECKPOINT -o MODEL.horq`, or use `horq eval CHECKPOINT` / `horq summary CHECKPOINT`"
        )
    if hlen > MAX_HEADER_BYTES:
        raise HeaderError(f"not a .horq file, or a damaged one: its header length {hlen} exceeds the limit of "
                          f"{MAX_HEADER_BYTES} bytes")
    if HEADER_LEN_BYTES + hlen > len(data):
        raise TruncatedFileError(
            f"truncated file: {len(data)} bytes but its header alone needs {HEADER_LEN_BYTES + hlen}"
        )
    try:
        header = json.loads(data[HEADER_LEN_BYTES : HEADER_LEN_BYTES + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HeaderError(f"header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise HeaderError("header must be a JSON object")
    return hlen, header


def _parse_metadata(header: dict) -> dict:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not isinstance(meta.get(METADATA_KEY), str):
        raise VersionError("not a horq file: the safetensors metadata has no 'horq' entry")
    try:
        doc = json.loads(meta[METADATA_KEY])
    except (ValueError, RecursionError) as exc:
        raise HeaderError(f"horq metadata is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise VersionError("not a horq file: metadata 'format' is not 'horq'")
    version = doc.get("version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise VersionError(
            f"unsupported format version {version!r}; this horq reads versions {', '.join(map(str, READ_VERSIONS))}"
        )
    if not isinstance(doc.get("sha256"), str) or "graph" not in doc:
        raise HeaderError("horq metadata needs 'sha256' and 'graph' entries")
    return doc


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _tensor_layout(header: dict, data_len: int) -> dict:
    """Checks each tensor entry and that the entries tile the data region exactly."""
    layout = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise HeaderError(f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPES:
            raise TensorError(f"tensor {name!r}: dtype {dtype!r} is not allowed (F32, F16 and U64 only)")
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_count(d) for d in shape):
            raise HeaderError(f"tensor {name!r}: bad shape {shape!r}")
        if not isinstance(offs, list) or len(offs) != 2 or not all(_is_count(o) for o in offs):
            raise HeaderError(f"tensor {name!r}: bad data_offsets {offs!r}")
        begin, end = offs
        if end - begin != math.prod(shape) * _DTYPES[dtype].itemsize:
            raise HeaderError(f"tensor {name!r}: data_offsets {offs} do not match shape {shape} of {dtype}")
        layout[name] = (dtype, tuple(shape), begin, end)
    pos = 0
    for name, (_, _, begin, end) in sorted(layout.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != pos:
            raise HeaderError(f"tensor {name!r}: data_offsets leave a gap or overlap at byte {pos}")
        pos = end
    if pos > data_len:
        raise TruncatedFileError(f"truncated file: tensor data needs {pos} bytes but only {data_len} follow the header")
    if pos < data_len:
        raise HeaderError(f"{data_len - pos} unexpected bytes after the tensor data")
    return layout


def parse(data: bytes) -> HorqFile:
    """Parses and fully validates ``.horq`` bytes.

    Raises:
        HorqFormatError: the specific subclass says what is wrong (see :mod:`horq.format.errors`).
    """
    import safetensors.numpy

    data = bytes(data)
    hlen, header = _parse_header(data)
    doc = _parse_metadata(header)
    start = HEADER_LEN_BYTES + hlen
    layout = _tensor_layout(header, len(data) - start)
    if doc["version"] < 2:
        half = sorted(name for name, entry in layout.items() if entry[0] == F16)
        if half:
            raise VersionError(f"tensor {half[0]!r} is F16, which needs format version 2; the file says version 1")
    tensors = {}
    for name, (dtype, shape, begin, _end) in layout.items():
        count = math.prod(shape)
        if count == 0:
            tensors[name] = np.zeros(shape, _DTYPES[dtype])
        else:
            tensors[name] = np.frombuffer(data, dtype=_DTYPES[dtype], count=count, offset=start + begin).reshape(shape)
    try:
        digest = content_hash(doc["graph"], tensors)
    except (TypeError, ValueError, RecursionError) as exc:
        raise HeaderError(f"horq graph cannot be serialized canonically: {exc}") from exc
    if digest != doc["sha256"]:
        raise ChecksumError("SHA-256 of the graph and tensor data does not match the file's metadata (corrupted file)")
    graph = validate_graph(doc["graph"], {k: (layout[k][0], layout[k][1]) for k in layout})
    if required_version(doc["graph"]) > doc["version"]:
        raise VersionError(f"the graph uses ops of format version {required_version(doc['graph'])}; "
                           f"the file says version {doc['version']}")
    check_tensor_values(graph, tensors)
    # The safetensors library is the reference reader of the container; it must agree with ours.
    try:
        lib = safetensors.numpy.load(data)
    except Exception as exc:  # the library raises its own SafetensorError (and others) on bad framing
        raise HeaderError(f"safetensors rejected the container: {exc}") from exc
    if set(lib) != set(tensors) or any(not np.array_equal(lib[k], tensors[k]) for k in tensors):
        raise HeaderError("safetensors reads different tensors than the header describes")
    for arr in lib.values():
        arr.flags.writeable = False
    return HorqFile(graph, doc["graph"], lib, doc["version"], doc["sha256"])


def load(path) -> HorqFile:
    """Reads and fully validates a ``.horq`` file (see :func:`parse`).

    Raises:
        HorqFormatError: the file is not a valid packed model.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse(data)


def validate(path) -> Graph:
    """Checks a ``.horq`` file completely (framing, version, checksum, graph, tensor values).

    Returns:
        The validated graph.

    Raises:
        HorqFormatError: the specific subclass says what is wrong.
    """
    return load(path).graph


__all__ = ["HorqFile", "HorqFormatError", "build", "save", "load", "parse", "validate", "content_hash"]
