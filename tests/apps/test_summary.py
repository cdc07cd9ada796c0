"""horq.apps.summary: the cost model's numbers for known layers, totals, and sizes."""

from __future__ import annotations

import pytest
from horq_files import tiny_model

from horq import format as hf
from horq.apps.summary import format_summary, speedup, summarize


@pytest.mark.parametrize(("order", "expected"), [(1, 62.27), (2, 31.35), (3, 20.95), (4, 15.73)])
def test_speedup_formula_on_a_large_layer(order, expected):
    # docs/MATH.md "Cost model": 3x3 over c = 512 gives about 62x / 31x / 21x / 16x for orders 1-4.
    assert speedup(order, 512, 9) == pytest.approx(expected, abs=0.01)
    assert speedup(order, 512, 9) < speedup(order, 1024, 9) < 64 / order


def test_rows_and_totals(tmp_path):
    path = tmp_path / "tiny.horq"
    hf.save(path, *tiny_model())
    summ = summarize(path)
    rows = {r["name"]: r for r in summ.rows}
    c2 = rows["c2"]  # binary_conv2d order 2, weight (4, 4, 3, 3) on a 6x6 map, padding 1
    n, positions = 4 * 9, 36
    assert c2["weight_bits"] == 4 * n and c2["bytes"] == 4 * 8 + 4 * 4 * 4  # bits + alpha/bias/scale/shift
    assert c2["binary_ops"] == 2 * 4 * n * positions and c2["float_ops"] == 3 * 4 * positions
    assert c2["speedup"] == pytest.approx(speedup(2, 4, 9))
    c1 = rows["c1"]  # float conv (4, 2, 3, 3)
    assert c1["weight_bits"] == 32 * 4 * 18 and c1["binary_ops"] == 0 and c1["float_ops"] == 4 * 18 * 36
    fc1 = rows["fc1"]  # binary_linear order 1, (3, 4)
    assert fc1["binary_ops"] == 12 and fc1["speedup"] == pytest.approx(speedup(1, 4, 1))
    float_macs = 4 * 18 * 36 + 4 * n * 36 + 12 + 6
    cost = 4 * 18 * 36 + (2 * 4 * n * 36) / 64 + 3 * 4 * 36 + 12 / 64 + 2 * 3 + 6
    assert summ.speedup == pytest.approx(float_macs / cost)
    assert summ.file_bytes == path.stat().st_size and summ.state_dict_bytes is None
    text = format_summary(summ)
    assert "binary_conv2d" in text and "full-precision layers: c1, fc2" in text and "state_dict" not in text


def test_concat_and_flatten_do_no_arithmetic(tmp_path):
    """A concatenation copies and a flatten is a view: no float operations, unlike a ReLU on the same map."""
    graph, tensors = tiny_model()
    graph["nodes"][1:1] = [{"name": "cat", "op": "concat", "inputs": ["c1", "c1"]},
                           {"name": "catr", "op": "relu", "inputs": ["cat"]}]
    graph["output"] = "catr"
    graph["nodes"] = graph["nodes"][:3]
    path = tmp_path / "cat.horq"
    hf.save(path, graph, {k: v for k, v in tensors.items() if k.startswith("c1.")})
    rows = {r["name"]: r for r in summarize(path).rows}
    assert rows["cat"]["float_ops"] == 0
    assert rows["catr"]["float_ops"] == 8 * 6 * 6  # 8 channels after the concatenation
    rows = {r["name"]: r for r in summarize(_saved(tmp_path)).rows}
    assert rows["fl"]["float_ops"] == 0


def _saved(tmp_path):
    path = tmp_path / "tiny.horq"
    hf.save(path, *tiny_model())
    return path
