"""`horq demo` end to end on a cut-down run: trains three orders, ships the HORQ-2 model, reports."""

import itertools
import re
import time

import pytest

import horq.runtime as rt
from agreement import assert_close_to_exact, inputs
from horq.apps.cli import main
from horq.timing import interleaved_samples, interleaved_times, median_seconds, run_times


def test_demo_small(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path), "--epochs", "1", "--limit-train", "256", "--limit-test", "200",
               "--repeats", "3", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    for label in ("full precision", "XNOR (order 1)", "HORQ order 2"):
        assert re.search(rf"^{re.escape(label)}\s+\d+\.\d\d%", out, re.M), label
    assert (tmp_path / "model.horq").is_file()
    assert "trained on cpu (command: horq demo)" in out  # tests hide any GPU (tests/conftest.py)
    assert "backend native" in out
    ratio = float(re.search(r"\(([\d.]+)x smaller", out).group(1))
    assert ratio > 10  # most of mnist-cnn's weights are in binarized layers
    # The printed agreement with PyTorch (float32, a model trained with this machine's kernels) depends on
    # how this CPU rounds, so it is only sanity-checked; the runtime is held to the exact float64 reference
    # on the shipped file (tests/agreement.py), which does not.
    agree = float(re.search(r"same prediction on ([\d.]+)%", out).group(1))
    assert agree >= 90.0
    x = inputs((1, 28, 28), 200, seed=0)
    exact = rt.load(tmp_path / "model.horq", backend="reference")(x)
    assert_close_to_exact(rt.load(tmp_path / "model.horq")(x), exact, "demo model", min_close=0.9)


def test_timing_helpers():
    calls = []
    times = run_times(lambda: calls.append(1), repeats=4, warmup=3)
    assert len(times) == 4 and len(calls) == 7 and all(t >= 0 for t in times)
    assert median_seconds(lambda: None, repeats=3) >= 0
    with pytest.raises(ValueError, match="repeats"):
        run_times(lambda: None, repeats=0)
    order = []
    res = interleaved_times({k: (lambda k=k: order.append(k)) for k in "abc"}, min_reps=40, min_seconds=0.0)
    # one warm-up call each, then rounds of one call each: the first in the given order, the others shuffled
    rounds = ["".join(order[i:i + 3]) for i in range(0, len(order), 3)]
    assert rounds[:2] == ["abc", "abc"] and len(rounds) == 41 and all(sorted(r) == list("abc") for r in rounds)
    follows = {(a, b) for a, b in itertools.pairwise(order[3:]) if a != b}
    assert follows == {(a, b) for a in "abc" for b in "abc" if a != b}  # each after every other one
    assert set(res) == {"a", "b", "c"} and all(0 <= best <= med for med, best in res.values())
    samples = interleaved_samples({"a": lambda: None, "b": lambda: None}, min_reps=5, min_seconds=0.0, block=2)
    assert {k: len(v) for k, v in samples.items()} == {"a": 5, "b": 5}  # one counted call a block of two
    order.clear()
    interleaved_samples({k: (lambda k=k: order.append(k)) for k in "abc"}, min_reps=5, min_seconds=0.0, shuffle=False)
    assert "".join(order) == "abc" * 6  # the given order in every round
    with pytest.raises(ValueError, match="min_reps"):
        interleaved_times({"a": lambda: None}, min_reps=0, min_seconds=0.0)


def test_interleaved_blocks_count_the_calls_after_the_first():
    # block=3: rounds of three calls of each function, the first call of each block not timed ("warm" timing).
    order, calls = [], []

    def slow_first():  # the first call of every block (after the warm-up call) is slow
        calls.append(1)
        if len(calls) > 1 and (len(calls) - 2) % 3 == 0:
            time.sleep(0.05)

    res = interleaved_times({"a": slow_first, "b": lambda: order.append("b")}, min_reps=2, min_seconds=0.0,
                            block=3)
    assert len(calls) == 1 + 2 * 3 and order == ["b"] * (1 + 2 * 3)
    assert res["a"][0] < 0.02  # only the fast calls were counted
    with pytest.raises(ValueError, match="block"):
        interleaved_times({"a": lambda: None}, min_reps=1, min_seconds=0.0, block=0)
