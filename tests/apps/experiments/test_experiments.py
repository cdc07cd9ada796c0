"""horq.apps.experiments: cost model, accuracy experiment end to end, residual guarantee, speed measurement."""

import json
from itertools import pairwise

import pytest

from horq.apps.cli import main
from horq.apps.summary import speedup

torch = pytest.importorskip("torch")


# ---- cost model ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c, nw, k, expected", [
    # by hand: 64*c*nw / (k*c*nw + 64*(k+1))
    (64, 9, 1, 64 * 576 / (576 + 128)),          # 36864 / 704
    (256, 9, 2, 64 * 2304 / (2 * 2304 + 192)),   # 147456 / 4800 = 30.72
    (1, 1, 1, 64 / 129),
    (1024, 49, 4, 64 * 50176 / (4 * 50176 + 320)),
])
def test_cost_model_hand_values(c, nw, k, expected):
    assert speedup(k, c, nw) == pytest.approx(expected, rel=1e-12)


def test_cost_model_known_numbers():
    assert speedup(2, 256, 9) == pytest.approx(30.72)
    assert speedup(1, 64, 9) == pytest.approx(52.363636, rel=1e-6)
    # large layers approach 64 / K (docs/MATH.md "Cost model": the paper's 58x / 30x / 20x / 15x for orders 1-4
    # are the model's c = 128 values)
    for k, paper in zip((1, 2, 3, 4), (58, 30, 20, 15), strict=True):
        assert speedup(k, 512, 9) == pytest.approx(paper, rel=0.08)


def test_cost_model_monotone():
    cs, nws, ks = [16, 32, 64, 128, 256, 512, 1024], [1, 4, 9, 16, 25, 36, 49], [1, 2, 3, 4]
    for nw in nws:
        for k in ks:
            s = [speedup(k, c, nw) for c in cs]
            assert all(a < b for a, b in pairwise(s)), (nw, k, s)  # grows with c
    for c in cs:
        for k in ks:
            s = [speedup(k, c, nw) for nw in nws]
            assert all(a < b for a, b in pairwise(s)), (c, k, s)  # grows with N_W
        for nw in nws:
            s = [speedup(k, c, nw) for k in ks]
            assert all(a > b for a, b in pairwise(s)), (c, nw, s)  # falls with K
            assert s[0] < 64  # never beyond the word width


@pytest.mark.parametrize("bad", [(0, 9, 1), (16, 0, 1), (16, 9, 0), (16.5, 9, 1)])
def test_cost_model_rejects_bad_args(bad):
    with pytest.raises(ValueError):
        speedup(bad[2], bad[0], bad[1])


# ---- accuracy experiment end to end -------------------------------------------------------------------------

def test_accuracy_end_to_end(tmp_path, capsys):
    out = tmp_path / "acc"
    rc = main(["experiment", "accuracy", "--data", "digits", "--model", "mnist-mlp", "--epochs", "1",
               "--orders", "fp", "2", "--limit-train", "256", "--limit-test", "100", "--threads", "1",
               "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "accuracy.json").read_text())
    assert [r["order"] for r in result["summary"]] == ["fp", "o2"]
    assert [r["order"] for r in result["runs"]] == ["fp", "o2"]
    for r in result["runs"]:
        assert len(r["epochs"]) == 1 and 0.0 <= r["final_test_acc"] <= 1.0
    for r in result["summary"]:
        assert r["test_error_mean"] == pytest.approx(1 - r["test_acc_mean"])
        assert r["test_acc_std"] is None  # one seed: no spread
    assert "horq experiment accuracy --data digits" in result["command"]
    md = (out / "accuracy.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(table) == 3 and table[1].startswith("| FP |") and table[2].startswith("| 2 (HORQ) |")
    png = (out / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # a second call reuses the finished runs instead of training again
    rc = main(["experiment", "accuracy", "--data", "digits", "--model", "mnist-mlp", "--epochs", "1",
               "--orders", "fp", "2", "--limit-train", "256", "--limit-test", "100", "--threads", "1",
               "--out", str(out)])
    assert rc == 0
    assert all(r["reused"] for r in json.loads((out / "accuracy.json").read_text())["runs"])


def test_accuracy_model_options_are_part_of_the_recipe(tmp_path, capsys):
    """--model-arg reaches the zoo builder, is recorded, and a run with other options is not reused."""
    import torch

    out = tmp_path / "acc"
    base = ["experiment", "accuracy", "--data", "digits", "--model", "mnist-mlp", "--epochs", "1", "--orders", "fp",
            "--limit-train", "128", "--limit-test", "50", "--threads", "1", "--out", str(out)]
    assert main([*base, "--model-arg", "hidden=16"]) == 0
    result = json.loads((out / "accuracy.json").read_text())
    assert result["settings"]["model_args"] == {"hidden": 16}
    assert "`mnist-mlp` (hidden=16) on `digits`" in (out / "accuracy.md").read_text()
    state = torch.load(out / "runs" / "fp-s0" / "last.pt", weights_only=False)["model"]
    assert any(t.shape[0] == 16 for t in state.values() if t.dim() == 2)
    assert main([*base, "--model-arg", "hidden=24"]) == 0
    assert not any(r["reused"] for r in json.loads((out / "accuracy.json").read_text())["runs"])


def test_accuracy_spread_over_seeds():
    from horq.apps.experiments.accuracy import summarize

    runs = [{"order": "o1", "seed": s, "final_test_acc": a, "train_seconds": 1.0,
             "epochs": [{"test_loss": 0.5}]} for s, a in ((0, 0.90), (1, 0.92))]
    (row,) = summarize(runs)
    assert row["test_acc_mean"] == pytest.approx(0.91)
    assert row["test_acc_std"] == pytest.approx(0.0141421356, rel=1e-6)


def test_accuracy_targets():
    from horq.apps.experiments.accuracy import targets

    mk = lambda o, a: {"order": o, "test_acc_mean": a, "test_error_mean": 1 - a}  # noqa: E731
    met = targets("mnist", [mk("o1", 0.980), mk("o2", 0.990)])
    assert [t["met"] for t in met] == [True, True]
    missed = targets("mnist", [mk("o1", 0.980), mk("o2", 0.985)])
    assert [t["met"] for t in missed] == [False, True]
    (fashion,) = targets("fashion-mnist", [mk("fp", 0.90), mk("o1", 0.80), mk("o2", 0.84)])
    assert not fashion["met"]  # 40% of the gap closed


def test_full_length_targets_from_ten_epochs():
    from horq.apps.experiments.accuracy import targets

    def mk(o, accs):
        return {"order": o, "seeds": [0, 1], "test_acc": accs, "test_acc_mean": sum(accs) / 2,
                "test_error_mean": 1 - sum(accs) / 2}

    rows = [mk("o1", [0.991, 0.995]), mk("o2", [0.992, 0.994])]  # order 2 worse than XNOR in seed 1
    assert len(targets("mnist", rows, epochs=9)) == 2
    full = targets("mnist", rows, epochs=10)
    assert [t["met"] for t in full[:2]] == [True, False] and "seed 1: 0.60% vs 0.50%" in full[1]["value"]
    rows = [mk("fp", [0.93, 0.93]), mk("o1", [0.90, 0.90]), mk("o2", [0.921, 0.921])]
    within, closed = targets("fashion-mnist", rows, epochs=10)[:2]
    assert within["met"] and closed["met"]  # 0.9 points below FP, 70% of the gap
    rows[2] = mk("o2", [0.919, 0.919])
    within, closed = targets("fashion-mnist", rows, epochs=10)[:2]
    assert not within["met"] and not closed["met"]  # 1.1 points below FP, 63% of the gap


def test_cifar10_missing_gives_clear_message(tmp_path, capsys):
    rc = main(["experiment", "accuracy", "--data", "cifar10", "--data-root", str(tmp_path), "--epochs", "1",
               "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cifar10 is not available" in err and "horq data fetch cifar10" in err
    assert not (tmp_path / "o" / "accuracy.json").exists()


# ---- residual guarantee ---------------------------------------------------------------------------------------

def test_residual_errors_strictly_decrease(tmp_path):
    from horq.apps.experiments.residual import gaussian_reference, residual_errors
    from horq.nn import HORQConfig, build_model, convert_

    torch.manual_seed(0)
    model = build_model("mnist-cnn", in_shape=(1, 8, 8), num_classes=10, width=4, hidden=16)
    convert_(model, HORQConfig(order=2))
    x = torch.randn(6, 1, 8, 8)
    layers, which = residual_errors(model, x, max_order=4)
    assert which.startswith("binary layers")
    assert [r["type"] for r in layers] == ["HORQConv2d", "HORQConv2d", "HORQLinear"]
    assert [r["n"] for r in layers] == [4 * 9, 8 * 9, 8 * 2 * 2]
    assert layers[0]["columns"] == 6 * 4 * 4  # 8x8 pooled once, padding 1: 4x4 positions per image
    for r in layers:
        for key in ("rel_error", "rel_error_pooled"):
            e = r[key]
            assert 0 < e[-1] and all(a > b for a, b in pairwise(e)), (r["name"], key, e)
            assert e[0] < 1.0
    g = gaussian_reference(512, 4)
    # docs/MATH.md "The error identity": relative squared error about 0.36, 0.13, 0.058, 0.033 for Gaussian data
    assert [v * v for v in g] == pytest.approx([0.36, 0.13, 0.058, 0.033], abs=0.01)


def test_residual_cli_on_checkpoint(tmp_path):
    from horq.nn.training import TrainSettings, train

    train(TrainSettings(model="mnist-mlp", data="digits", order=1, epochs=1, limit_train=128, limit_test=32,
                        threads=1, progress=False, out=str(tmp_path / "run")))
    rc = main(["analyze", "residual", str(tmp_path / "run" / "last.pt"), "--limit", "32", "--out",
               str(tmp_path / "res")])
    assert rc == 0
    result = json.loads((tmp_path / "res" / "residual.json").read_text())
    (layer,) = result["layers"]  # mnist-mlp has one binary layer
    assert layer["n"] == 512 and layer["columns"] == 32
    e = layer["rel_error"]
    assert all(a > b for a, b in pairwise(e))
    assert (tmp_path / "res" / "residual.png").read_bytes()[:4] == b"\x89PNG"


# ---- speed measurement and storage ------------------------------------------------------------------------

def test_speedup_measurement_tiny(tmp_path):
    pytest.importorskip("horq._core")
    from horq.apps.experiments.speedup import measure_conv, run_speedup

    m = measure_conv(8, 3, [1, 2], out_size=4, reps={"min_reps": 2, "min_seconds": 0.0})
    assert m["fp32"] > 0 and set(m["horq"]) == {1, 2} and all(t > 0 for t in m["horq"].values())
    result = run_speedup(out=tmp_path, kernel_sizes=[1, 3], channels=[8], orders=[1], out_size=4,
                         quick=True, progress=False)
    assert [(r["k"], r["c"]) for r in result["rows"]] == [(1, 8), (3, 8)]
    assert all(r["measured"][1] > 0 for r in result["rows"])
    assert (tmp_path / "speedup_vs_channels.png").is_file() and (tmp_path / "speedup_vs_kernel.png").is_file()
    assert "| 3 | 8 |" in (tmp_path / "speedup.md").read_text()
    (tmp_path / "speedup.md").unlink()
    assert main(["analyze", "speedup", "--rebuild", "--out", str(tmp_path)]) == 0
    assert "model / measured speedup" in (tmp_path / "speedup.md").read_text()


def test_storage_counts():
    from horq.apps.experiments.storage import count_bytes
    from horq.nn import HORQConfig, build_model, convert_

    model = build_model("mnist-mlp", in_shape=(1, 8, 8), num_classes=10, hidden=100)
    fp = count_bytes(model, (1, 8, 8))
    assert fp["packed_bytes"] == fp["float32_bytes"] and fp["binary_layers"] == []
    convert_(model, HORQConfig(order=2))
    b = count_bytes(model, (1, 8, 8))
    assert b["binary_layers"] == ["4"]
    # the 100x100 binary weight: 100 rows of 2 words (16 B) + 100 alphas, instead of 10,000 floats
    assert fp["float32_bytes"] - b["packed_bytes"] == 100 * 100 * 4 - (100 * 16 + 100 * 4)
    assert b["act_float32_bytes"] == 100 * 4 and b["act_packed_bytes"] == 2 * (16 + 4)


def _write_cifar(root, per_batch=8, seed=0):
    """CIFAR-10 python-format batches as the official archive lays them out (pickled dicts, bytes keys)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, per_batch).tolist(), b"data": data,
                 b"filenames": [b"img_%d.png" % i for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_cifar10_smoke_on_generated_files(tmp_path):
    _write_cifar(tmp_path / "root")
    out = tmp_path / "o"
    rc = main(["experiment", "accuracy", "--data", "cifar10", "--data-root", str(tmp_path / "root"),
               "--model", "mnist-mlp", "--epochs", "1", "--orders", "fp", "1", "--threads", "1", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "accuracy.json").read_text())
    assert result["settings"]["data"] == "cifar10" and [r["order"] for r in result["summary"]] == ["fp", "o1"]
    assert (out / "accuracy.png").is_file() and "| 1 (XNOR) |" in (out / "accuracy.md").read_text()
