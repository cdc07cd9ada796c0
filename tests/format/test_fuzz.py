"""Bounded fuzzing of the loader: random mutations of a valid file never crash or hang, they either load
or raise a HorqFormatError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from horq_files import tiny_model

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
