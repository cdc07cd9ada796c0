"""The .horq container: round trip, golden bytes, and every kind of bad file -> its specific error."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from horq_files import header_len, raw_file, tiny_model

from horq import format as hf
from horq.format import container

# Pinned layout of tiny_model(): any change to the graph JSON, the tensor bytes, the metadata layout or the
# safetensors framing changes these. Update them only together with FORMAT_VERSION or docs/FORMAT.md.
GOLDEN_SHA256 = "2c4e80b6d83ae2933956a80268ff6863268bb4234471627d073c3de16347e9f7"
GOLDEN_HEADER_LEN = 2480  # file is 2988 bytes: 8 + 2480 + 500 of tensor data
# safetensors puts the 8-byte-aligned U64 tensors first, then sorts by name.
GOLDEN_TENSOR_ORDER = ["c2.bits", "fc1.bits", "bn.scale", "bn.shift", "c1.bias", "c1.weight", "c2.alpha", "c2.bias",
                       "c2.scale", "c2.shift", "fc1.alpha", "fc2.bias", "fc2.weight"]


def _build():
    graph, tensors = tiny_model()
    return hf.build(graph, tensors)


def test_round_trip(tmp_path):
    graph, tensors = tiny_model()
    path = tmp_path / "m.horq"
    hf.save(path, graph, tensors)
    f = hf.load(path)
    assert f.version == 1  # no float16 tensors: still readable by version-1 readers
    assert f.graph_json == graph
    assert set(f.tensors) == set(tensors)
    for k, v in tensors.items():
        assert f.tensors[k].dtype == v.dtype and np.array_equal(f.tensors[k], v)
    assert [n.op for n in f.graph.nodes][:4] == ["conv2d", "relu", "affine", "binary_conv2d"]
    assert f.graph.output_shape == (2,)
    assert hf.validate(path).input_shape == (2, 6, 6)


def test_alpha_is_optional(tmp_path):
    """A binary node without alpha (the exporter folded it into a later scale) computes with alpha = 1."""
    import horq.runtime as rt

    graph, tensors = tiny_model()
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32)
    tensors["fc1.alpha"] = np.ones(3, np.float32)
    hf.save(tmp_path / "ones.horq", graph, tensors)
    del tensors["fc1.alpha"], graph["nodes"][-2]["tensors"]["alpha"]
    hf.save(tmp_path / "none.horq", graph, tensors)
    for backend in ("reference", "numpy", "auto"):
        np.testing.assert_array_equal(rt.load(tmp_path / "none.horq", backend=backend)(x),
                                      rt.load(tmp_path / "ones.horq", backend=backend)(x))


def test_golden_bytes():
    data = _build()
    hlen = header_len(data)
    header = json.loads(data[8 : 8 + hlen])
    meta = json.loads(header["__metadata__"]["horq"])
    assert list(header["__metadata__"]) == ["horq"]
    assert list(meta) == ["format", "graph", "sha256", "version"]  # canonical JSON: sorted keys
    assert meta["format"] == "horq" and meta["version"] == 1
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    assert order == GOLDEN_TENSOR_ORDER
    assert header["c2.bits"] == {"dtype": "U64", "shape": [4, 1], "data_offsets": header["c2.bits"]["data_offsets"]}
    assert hlen == GOLDEN_HEADER_LEN and hlen % 8 == 0 and len(data) == 2988
    prefix = b'{"__metadata__":{"horq":"{\\"format\\":\\"horq\\",\\"graph\\":{'
    assert data[8 : 8 + len(prefix)] == prefix
    assert data[-24:] == tiny_model()[1]["fc2.weight"].astype("<f4").tobytes()  # last tensor, raw little-endian
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256


def test_content_hash_covers_graph_and_tensors():
    graph, tensors = tiny_model()
    h = hf.content_hash(graph, tensors)
    graph2 = json.loads(json.dumps(graph))
    graph2["nodes"][3]["attrs"]["order"] = 3
    assert hf.content_hash(graph2, tensors) != h
    t2 = dict(tensors, **{"c2.alpha": tensors["c2.alpha"] * 2})
    assert hf.content_hash(graph, t2) != h


@pytest.mark.parametrize("cut", ["empty", "in_length", "in_header", "in_data", "last_byte"])
def test_truncated(cut):
    data = _build()
    hlen = header_len(data)
    end = {"empty": 0, "in_length": 5, "in_header": 8 + hlen // 2, "in_data": 8 + hlen + 10,
           "last_byte": len(data) - 1}[cut]
    with pytest.raises(hf.TruncatedFileError):
        hf.parse(data[:end])


def test_flipped_tensor_byte_is_a_checksum_error():
    data = bytearray(_build())
    data[-3] ^= 0x10
    with pytest.raises(hf.ChecksumError):
        hf.parse(bytes(data))


def test_flipped_graph_value_is_a_checksum_error():
    data = _build()
    bad = data.replace(b'\\"order\\":2', b'\\"order\\":3')
    assert bad != data
    with pytest.raises(hf.ChecksumError):
        hf.parse(bad)


def test_oversized_header():
    data = _build()
    for n in (hf.MAX_HEADER_BYTES + 1, 2**63):
        with pytest.raises(hf.HeaderError, match="exceeds"):
            hf.parse(n.to_bytes(8, "little") + data[8:])


def test_malformed_header():
    data = _build()
    hlen = header_len(data)
    garbage = b"{" + b"x" * (hlen - 1)
    with pytest.raises(hf.HeaderError, match="JSON"):
        hf.parse(data[:8] + garbage + data[8 + hlen :])
    with pytest.raises(hf.HeaderError, match="object"):
        hf.parse(data[:8] + b"[1]".ljust(hlen) + data[8 + hlen :])


def test_overlapping_offsets():
    data = _build()
    hlen = header_len(data)
    header = json.loads(data[8 : 8 + hlen])
    a, b = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])[:2]
    header[b]["data_offsets"] = [x - 8 for x in header[b]["data_offsets"]]
    text = json.dumps(header).encode()
    with pytest.raises(hf.HeaderError):
        hf.parse(len(text).to_bytes(8, "little") + text + data[8 + hlen :])


@pytest.mark.parametrize(("kwargs", "match"), [({"version": 4}, "version 4"), ({"version": "1"}, "version"),
                                               ({"fmt": "onnx"}, "not a horq file")])
def test_wrong_version_or_format(kwargs, match):
    graph, tensors = tiny_model()
    with pytest.raises(hf.VersionError, match=match):
        hf.parse(raw_file(graph, tensors, **kwargs))


def test_plain_safetensors_is_not_a_horq_file():
    import safetensors.numpy

    with pytest.raises(hf.VersionError):
        hf.parse(safetensors.numpy.save({"a": np.zeros(2, np.float32)}))


def _mutated(mutate):
    graph, tensors = tiny_model()
    mutate(graph, tensors)
    return raw_file(graph, tensors)


def test_shape_that_does_not_fit():
    def m(graph, tensors):
        tensors["c2.alpha"] = np.ones(5, np.float32)

    with pytest.raises(hf.TensorError, match=r"c2.alpha.*\[5\].*\[4\]"):
        hf.parse(_mutated(m))


def test_weight_that_does_not_fit_the_input():
    def m(graph, tensors):
        tensors["fc2.weight"] = np.ones((2, 5), np.float32)

    with pytest.raises(hf.GraphError, match="5"):
        hf.parse(_mutated(m))


def test_wrong_dtype():
    def m(graph, tensors):
        tensors["c2.bits"] = tensors["c2.bits"].astype(np.float32)

    with pytest.raises(hf.TensorError, match="dtype F32"):
        hf.parse(_mutated(m))


def test_disallowed_dtype():
    graph, tensors = tiny_model()
    tensors["c1.bias"] = tensors["c1.bias"].astype(np.float64)
    with pytest.raises(hf.TensorError, match="F64"):  # rejected by the layout check, before the checksum
        hf.parse(raw_file(graph, tensors, sha="0" * 64))


def test_float16_storage_of_float_roles(tmp_path):
    """Every float role may be stored as F16 (the loader keeps the stored dtype; the runtime upcasts); the
    checksum covers the half-precision bytes; bits stay U64 only."""
    graph, tensors = tiny_model()
    half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in tensors.items()}
    path = tmp_path / "half.horq"
    hf.save(path, graph, half)
    f = hf.load(path)
    assert f.version == 2
    assert {k: v.dtype for k, v in f.tensors.items()} == {k: v.dtype for k, v in half.items()}
    with pytest.raises(hf.VersionError, match="needs format version 2"):  # F16 in a file claiming version 1
        hf.parse(raw_file(graph, half, version=1))
    assert hf.parse(raw_file(graph, half, version=2)).version == 2
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte belongs to a float16 tensor's data
    with pytest.raises(hf.ChecksumError):
        hf.parse(bytes(data))

    graph, tensors = tiny_model()
    tensors["c2.bits"] = np.zeros(tensors["c2.bits"].shape, np.float16)
    with pytest.raises(hf.TensorError, match="dtype F16, the graph needs U64"):
        hf.parse(raw_file(graph, tensors, version=2))


def test_float16_inf_is_rejected():
    graph, tensors = tiny_model()
    tensors["c2.scale"] = np.array([1.0, 2.0, np.inf, 1.0], np.float16)
    with pytest.raises(hf.TensorError, match="c2.scale.*NaN or Inf"):
        hf.parse(raw_file(graph, tensors, version=2))


def test_unknown_op():
    def m(graph, tensors):
        graph["nodes"][1]["op"] = "gelu"

    with pytest.raises(hf.UnknownOpError, match="gelu"):
        hf.parse(_mutated(m))


def test_missing_tensor():
    def m(graph, tensors):
        del tensors["c2.alpha"]

    with pytest.raises(hf.TensorError, match="missing"):
        hf.parse(_mutated(m))


def test_unreferenced_tensor():
    def m(graph, tensors):
        tensors["stray"] = np.zeros(3, np.float32)

    with pytest.raises(hf.TensorError, match="stray"):
        hf.parse(_mutated(m))


@pytest.mark.parametrize("ref", ["fc2", "nope", 3])
def test_bad_reference(ref):
    def m(graph, tensors):
        graph["nodes"][1]["inputs"] = [ref]  # a later node, an unknown one, not a name

    with pytest.raises(hf.GraphError, match="earlier node"):
        hf.parse(_mutated(m))


def test_bad_output_and_duplicate_names():
    def m(graph, tensors):
        graph["output"] = "input"

    with pytest.raises(hf.GraphError, match="output"):
        hf.parse(_mutated(m))

    def d(graph, tensors):
        graph["nodes"][1]["name"] = "c1"

    with pytest.raises(hf.GraphError, match="duplicate"):
        hf.parse(_mutated(d))


@pytest.mark.parametrize(("attr", "value"), [("order", 9), ("order", True), ("padding", [1]), ("stride", [0, 1]),
                                             ("shape", [4, 4, 3])])
def test_bad_attribute(attr, value):
    def m(graph, tensors):
        graph["nodes"][3]["attrs"][attr] = value

    with pytest.raises(hf.GraphError, match=attr):
        hf.parse(_mutated(m))


def test_nonzero_padding_bits_and_nan():
    def m(graph, tensors):
        tensors["fc1.bits"] = tensors["fc1.bits"] | np.uint64(1 << 40)

    with pytest.raises(hf.TensorError, match="padding bits"):
        hf.parse(_mutated(m))

    def n(graph, tensors):
        tensors["c1.bias"] = tensors["c1.bias"].copy()
        tensors["c1.bias"][0] = np.nan

    with pytest.raises(hf.TensorError, match="NaN"):
        hf.parse(_mutated(n))


def test_save_refuses_an_invalid_graph(tmp_path):
    graph, tensors = tiny_model()
    graph["nodes"][1]["op"] = "gelu"
    with pytest.raises(hf.UnknownOpError):
        hf.save(tmp_path / "m.horq", graph, tensors)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write(tmp_path, monkeypatch):
    graph, tensors = tiny_model()
    path = tmp_path / "m.horq"

    def half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(container, "_write_all", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        hf.save(path, graph, tensors)
    assert list(tmp_path.iterdir()) == [], "no final file and no temporary left behind"

    monkeypatch.undo()
    hf.save(path, graph, tensors)
    before = path.read_bytes()
    monkeypatch.setattr(container, "_write_all", half_then_fail)
    graph["info"]["name"] = "other"
    with pytest.raises(OSError):
        hf.save(path, graph, tensors)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def _v3_model():
    """tiny_model() with the ops of version 3: a grouped conv, prelu, leaky_relu and a concat."""
    graph, tensors = tiny_model()
    tensors["g.weight"] = (np.arange(4 * 2 * 3 * 3) % 5 - 2).astype(np.float32).reshape(4, 2, 3, 3) / 4
    tensors["p.weight"] = np.array([0.25, -0.5, 0.125, 1.0], np.float32)
    nodes = graph["nodes"]
    graph["nodes"] = nodes[:3] + [
        {"name": "g", "op": "conv2d", "inputs": ["bn"], "attrs": {"groups": 2, "padding": 1},
         "tensors": {"weight": "g.weight"}},
        {"name": "p", "op": "prelu", "inputs": ["g"], "tensors": {"weight": "p.weight"}},
        {"name": "lr", "op": "leaky_relu", "inputs": ["p"], "attrs": {"negative_slope": 0.2}},
        {"name": "cat", "op": "concat", "inputs": ["lr", "bn"]},
        {"name": "mix", "op": "conv2d", "inputs": ["cat"], "tensors": {"weight": "mix.weight"}},
    ] + nodes[3:]
    nodes[3]["inputs"] = ["mix"]  # c2 reads the concat through a 1x1 conv back to 4 channels
    tensors["mix.weight"] = np.eye(4, 8, dtype=np.float32).reshape(4, 8, 1, 1)
    return graph, tensors


def test_version_3_only_when_its_ops_are_used(tmp_path):
    """A file is written with the lowest version that holds it: the new ops make it 3, float16 alone 2,
    neither 1 (so every file older readers could read, they still can)."""
    import horq.runtime as rt

    graph, tensors = _v3_model()
    hf.save(tmp_path / "v3.horq", graph, tensors)
    f = hf.load(tmp_path / "v3.horq")
    assert f.version == 3 == hf.FORMAT_VERSION and f.graph.nodes[3].attrs["groups"] == 2
    half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in tensors.items()}
    assert hf.parse(hf.build(graph, half)).version == 3
    assert hf.parse(hf.build(*tiny_model())).version == 1
    for version in (1, 2):  # a file claiming an older version may not use the newer ops
        with pytest.raises(hf.VersionError, match="format version 3; the file says version"):
            hf.parse(raw_file(graph, tensors, version=version))
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(rt.load(tmp_path / "v3.horq", backend="numpy")(x),
                               rt.load(tmp_path / "v3.horq", backend="reference")(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("mutate", "error", "match"), [
    (lambda g, t: g["nodes"][6].update(inputs=["lr"]), hf.GraphError, "2 to 1024 inputs"),
    (lambda g, t: g["nodes"].insert(6, {"name": "mp", "op": "max_pool2d", "inputs": ["lr"],
                                         "attrs": {"kernel": 2, "stride": 2}}) or g["nodes"][7].update(
        inputs=["mp", "bn"]), hf.GraphError, "equal but for the channel"),
    (lambda g, t: t.update({"p.weight": np.ones(3, np.float32)}), hf.TensorError, r"\[1\] or \[4\]"),
    (lambda g, t: g["nodes"][3]["attrs"].update(groups=3), hf.GraphError, "groups"),
    (lambda g, t: g["nodes"][3]["attrs"].update(groups=0), hf.GraphError, "groups"),
    (lambda g, t: g["nodes"][5]["attrs"].update(negative_slope="x"), hf.GraphError, "negative_slope"),
], ids=["one-input", "shapes", "prelu-weight", "groups-split", "groups-zero", "slope"])
def test_version_3_ops_are_validated(mutate, error, match):
    graph, tensors = _v3_model()
    mutate(graph, tensors)
    with pytest.raises(error, match=match):
        hf.parse(raw_file(graph, tensors, version=3))
