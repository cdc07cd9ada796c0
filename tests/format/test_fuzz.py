"""Bounded fuzzing of the loader: random mutations of a valid file never crash or hang, they either load
or raise a HorqFormatError."""

from __future__ import annotations

import pytest
from horq_files import tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from horq import format as hf

VALID = hf.build(*tiny_model())

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(VALID) - 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(VALID) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(VALID) - 1), st.just(0)),
    st.tuples(st.just("header_len"), st.integers(0, 2**64 - 1), st.just(0)),
)


def _apply(data: bytearray, m) -> bytearray:
    kind, pos, val = m
    if kind != "header_len":
        pos = pos % (len(data) + 1)  # earlier mutations may have shortened the file
    if kind == "flip" and pos < len(data):
        data[pos] ^= val
    elif kind == "truncate":
        del data[pos:]
    elif kind == "insert":
        data.insert(pos, val)
    elif kind == "delete" and pos < len(data):
        del data[pos]
    elif kind == "header_len":
        data[:8] = pos.to_bytes(8, "little")
    return data


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutations_only_raise_format_errors(mutations):
    data = bytearray(VALID)
    for m in mutations:
        data = _apply(data, m)
    try:
        f = hf.parse(bytes(data))
    except hf.HorqFormatError:
        return
    # Accepted: then it must be fully consistent (e.g. a flip inside insignificant JSON whitespace).
    assert f.graph.output_shape == (2,)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["input", "c1", "fc2", "relu", "add", "c2.bits"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.data())
def test_graph_mutations_with_valid_checksum_only_raise_format_errors(data):
    """The checksum stops byte-level fuzzing early; here the graph itself is mutated and re-hashed, so the
    graph validator sees type confusion, missing keys and odd values."""
    import copy

    from horq_files import raw_file

    graph, tensors = tiny_model()
    graph = copy.deepcopy(graph)
    paths = [p for p in _paths(graph) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = graph
        try:
            for k in path[:-1]:
                parent = parent[k]
            if data.draw(st.booleans()) or not isinstance(parent, (dict, list)):
                parent[path[-1]] = data.draw(json_values)
            else:
                del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    try:
        f = hf.parse(raw_file(graph, tensors))
    except hf.HorqFormatError:
        return
    assert f.graph.nodes
