"""`horq analyze frontier` and `horq train --orders`: a tiny digits model end to end (frontier written, its
JSON read back by HORQConfig.from_dict and by `horq train --orders`), the held-out split never touching the test
split, the search on hand-made candidates, and one-line errors for bad --orders files."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest

from horq.apps.cli import main
from horq.data import holdout_indices, split_holdout

torch = pytest.importorskip("torch")

HOLDOUT = 300
TINY = ["--model", "mnist-cnn", "--model-arg", "width=4", "--model-arg", "hidden=16", "--data", "digits",
        "--batch-size", "64", "--threads", "1", "--no-progress", "--limit-test", "64"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch order-2 digits model trained without its held-out samples, and its frontier."""
    root = tmp_path_factory.mktemp("frontier")
    assert main(["train", *TINY, "--order", "2", "--epochs", "1", "--holdout", str(HOLDOUT),
                 "--out", str(root / "base")]) == 0
    return root


@pytest.fixture(scope="module")
def frontier(run):
    from horq.data import loaders

    asked = []
    real = loaders.load

    def spy(name, split, **kw):
        asked.append(split)
        return real(name, split, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr("horq.data.load", spy)  # what frontier imports
    try:
        rc = main(["analyze", "frontier", str(run / "base" / "last.pt"), "--holdout", str(HOLDOUT), "--rounds", "3",
                   "--min-seconds", "0.01", "--threads", "1", "--out", str(run / "fr")])
    finally:
        mp.undo()
    assert rc == 0
    return run / "fr", asked


def test_frontier_writes_everything(frontier):
    out, _ = frontier
    result = json.loads((out / "frontier.json").read_text())
    assert result["layers"] == ["4", "8", "12"]  # mnist-cnn's binary layers: two convolutions and a linear layer
    assert result["trained_orders"] == {"4": 2, "8": 2, "12": 2}
    assert len(result["candidates"]) == 27 and result["search"].startswith("exhaustive")
    assert not result["holdout"]["seen_in_training"]
    for name in result["layers"]:
        assert set(result["sensitivity"][name]) == {"1", "2", "3"}
        assert all(v > 0 for v in result["latency"]["layer_ms"][name].values())
    front = result["frontier"]
    assert front and all(a["predicted_ms"] <= b["predicted_ms"] and a["holdout_acc"] < b["holdout_acc"]
                         for a, b in pairwise(front))
    assert all(c["measured_ms"] > 0 for c in result["additive_check"])
    png = (out / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| orders | held-out acc (%)" in (out / "frontier.md").read_text()
    for c in front:
        assert (out / c["file"]).is_file()


def test_chosen_json_round_trips(frontier, run):
    from horq.apps.experiments.frontier import binary_layers
    from horq.nn.checkpoint import load_model
    from horq.nn.convert import HORQConfig

    out, _ = frontier
    doc = json.loads((out / "chosen.json").read_text())
    cfg = HORQConfig.from_dict(doc)
    assert cfg.to_dict() == doc
    chosen = json.loads((out / "frontier.json").read_text())["chosen"]["orders"]
    assert cfg.overrides == chosen
    # fine-tune the chosen point from the base model: the new run has exactly those orders
    assert main(["train", *TINY, "--epochs", "1", "--holdout", str(HOLDOUT), "--orders", str(out / "chosen.json"),
                 "--init-from", str(run / "base" / "last.pt"), "--out", str(run / "tuned")]) == 0
    model, ckpt = load_model(run / "tuned" / "last.pt")
    assert {n: m.order for n, m in binary_layers(model)} == chosen
    assert ckpt["config"]["overrides"] == chosen
    # and side by side with the base model on the test split
    assert main(["analyze", "frontier-check", str(run / "base" / "last.pt"), str(run / "tuned" / "last.pt"),
                 "--labels", "base", "chosen", "--min-seconds", "0.01", "--threads", "1",
                 "--out", str(run / "check")]) == 0
    rows = json.loads((run / "check" / "check.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["base", "chosen"] and rows[1]["orders"] == chosen
    assert all(0 <= r["test_acc"] <= 1 and r["latency_ms"] > 0 for r in rows)


def test_holdout_never_touches_the_test_split(frontier):
    _, asked = frontier
    assert asked and set(asked) == {"train"}


def test_holdout_split_is_disjoint_and_nested():
    kept, held = split_holdout(1500, HOLDOUT)
    assert len(held) == HOLDOUT and len(kept) == 1500 - HOLDOUT
    assert not set(kept) & set(held) and set(kept) | set(held) == set(range(1500))
    assert np.array_equal(held, holdout_indices(1500, HOLDOUT))  # deterministic
    assert set(holdout_indices(1500, 100)) <= set(held)  # a smaller held-out split lies inside a larger one
    with pytest.raises(ValueError):
        holdout_indices(10, 10)


def test_pareto_and_greedy_search():
    from horq.apps.experiments.frontier import pareto, search
    from horq.nn import HORQConfig, build_model, convert_

    c = lambda ms, acc: {"predicted_ms": ms, "holdout_acc": acc}  # noqa: E731
    front = pareto([c(3, 0.9), c(1, 0.5), c(2, 0.4), c(2, 0.7), c(4, 0.9)])
    assert [(p["predicted_ms"], p["holdout_acc"]) for p in front] == [(1, 0.5), (2, 0.7), (3, 0.9)]

    torch.manual_seed(0)
    model = convert_(build_model("mnist-cnn", in_shape=(1, 8, 8), num_classes=10, width=4, hidden=16),
                     HORQConfig(order=2)).eval()
    from horq.apps.experiments.frontier import binary_layers

    layers = binary_layers(model)
    lat = {"fixed_ms": 1.0, "layer_ms": {n: {1: 1.0, 2: 2.0, 3: 3.0} for n, _ in layers}}
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 10, (20,))
    cands, how = search(model, layers, [1, 2, 3], lat, x, y, max_candidates=5)
    assert how.startswith("greedy")
    assert len(cands) < 27 and {3} in [set(k["orders"].values()) for k in cands]
    assert {1} in [set(k["orders"].values()) for k in cands]  # descends all the way
    assert [m.order for _, m in layers] == [2, 2, 2]  # the model is left as it was


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON file"),
    ("[1, 2]", "expected a JSON object"),
    ('{"overrides": {"4": 1}, "speed": 3}', "unknown keys"),
    ('{"overrides": {"4": -1}}', "order must be None or an integer"),
    ('{"overrides": {"4": "2"}}', "order must be None or an integer"),
    ('{"order": 2}', 'no "overrides"'),
    ('{"overrides": {"nosuch": 1}}', "overrides name no Linear/Conv2d of the model: ['nosuch']"),
    ('{"order": 1, "overrides": {"4": 1}}', "--order contradicts order=1"),
])
def test_bad_orders_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "orders.json"
    path.write_text(content)
    rc = main(["train", *TINY, "--limit-train", "64", "--epochs", "1", "--order", "2", "--orders", str(path),
               "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_missing_orders_file(tmp_path, capsys):
    rc = main(["train", *TINY, "--epochs", "1", "--orders", str(tmp_path / "none.json"), "--out", str(tmp_path / "r")])
    assert rc == 2 and "--orders: no file" in capsys.readouterr().err


def test_resume_keeps_orders_and_holdout(tmp_path, capsys):
    path = tmp_path / "orders.json"
    path.write_text('{"overrides": {"4": 1}}')
    base = [*TINY, "--limit-train", "64", "--order", "2", "--out", str(tmp_path / "run")]
    assert main(["train", *base, "--epochs", "1", "--holdout", "100", "--orders", str(path)]) == 0
    capsys.readouterr()
    assert main(["train", *base, "--epochs", "2", "--holdout", "100", "--resume"]) == 2
    assert "overrides" in capsys.readouterr().err
    assert main(["train", *base, "--epochs", "2", "--orders", str(path), "--resume"]) == 2
    assert "holdout" in capsys.readouterr().err
    assert main(["train", *base, "--epochs", "2", "--holdout", "100", "--orders", str(path), "--resume"]) == 0


def test_holdout_as_large_as_the_training_split(tmp_path, capsys):
    rc = main(["train", *TINY, "--epochs", "1", "--holdout", "1500", "--out", str(tmp_path / "r")])
    assert rc == 2 and "held-out split of 1500 samples needs 1 <= k < 1500" in capsys.readouterr().err
