"""horq export / summary / run / bench model on a small checkpoint trained on the bundled digits data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import horq.data
import horq.runtime as rt
from horq.apps.cli import main
from horq.nn import HORQConfig, build_model, convert_
from horq.nn.checkpoint import atomic_torch_save


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    kwargs = {"in_shape": (1, 8, 8), "num_classes": 10}
    config = HORQConfig(order=2, keep_first_last_fp=False, overrides={"8": 1})
    model = build_model("mnist-cnn", **kwargs, width=8, hidden=32)
    convert_(model, config)
    train = horq.data.load("digits", "train")
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        idx = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    # Only the keys export needs; the builder kwargs ride in model_kwargs like `horq train` writes them.
    ckpt = {"model_name": "mnist-cnn", "model_kwargs": {**kwargs, "width": 8, "hidden": 32},
            "config": config.to_dict(), "model": model.state_dict(), "epoch": 1}
    atomic_torch_save(ckpt, path)
    return path, model


def test_export_summary_run(ckpt, tmp_path, capsys):
    path, model = ckpt
    out = tmp_path / "digits.horq"
    assert main(["export", str(path), "-o", str(out)]) == 0
    assert "smaller than the float32 state_dict" in capsys.readouterr().out

    for src in (out, path):  # a packed file, and a checkpoint exported in memory
        assert main(["summary", str(src)]) == 0
        text = capsys.readouterr().out
        assert "binary_conv2d" in text and "cost-model speedup" in text and "x smaller" in text
    assert main(["summary", str(out), "--json"]) == 0
    summ = json.loads(capsys.readouterr().out)
    assert summ["file_bytes"] == out.stat().st_size and summ["compression"] > 1

    test = horq.data.load("digits", "test")
    with torch.no_grad():
        torch_acc = (model(torch.from_numpy(test.x)).argmax(1).numpy() == test.y).mean()
    assert torch_acc > 0.5, "the fixture should have learnt something"
    # `horq run --data` reports what the runtime predicts. (How close the runtime is to PyTorch is the end-to-end
    # tests' subject, against float64 truth: compared with this float32 model trained on this machine's
    # PyTorch, the count could move by a sample or two between CPUs, which rounding decides near a tie.)
    for backend in ("numpy", "auto"):
        assert main(["run", str(out), "--data", "digits", "--backend", backend]) == 0
        line = capsys.readouterr().out
        correct = int(re.search(r"\((\d+)/(\d+)\)", line).group(1))
        assert correct == int((rt.load(out, backend=backend).predict(test.x) == test.y).sum()), line
        assert abs(correct / len(test.y) - torch_acc) <= 0.05, line  # same model: only near-ties may differ

    np.save(tmp_path / "x.npy", test.x[:7])
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    preds = [int(v) for v in capsys.readouterr().out.split()]
    logits = np.load(tmp_path / "y.npy")
    assert logits.shape == (7, 10) and logits.dtype == np.float32 and preds == logits.argmax(1).tolist()

    np.save(tmp_path / "bad.npy", test.x[:2].astype(np.float64))
    assert main(["run", str(out), "--input", str(tmp_path / "bad.npy")]) == 2
    assert "float32" in capsys.readouterr().err

    # --float16: a smaller file whose accuracy on the digits test set stays within two samples of PyTorch's.
    half = tmp_path / "digits16.horq"
    assert main(["export", str(path), "-o", str(half), "--float16"]) == 0
    capsys.readouterr()
    assert half.stat().st_size < out.stat().st_size
    assert main(["run", str(half), "--data", "digits"]) == 0
    acc = float(re.search(r"accuracy ([\d.]+)%", capsys.readouterr().out).group(1)) / 100
    assert abs(acc - torch_acc) <= 2 / len(test.y) + 1e-9


def test_bench_model(ckpt, tmp_path, capsys):
    path, _ = ckpt
    out = tmp_path / "digits.horq"
    assert main(["export", str(path), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["bench", "model", str(out), "--batch", "1", "4", "--threads", "1", "--repeats", "2",
                 "--warmup", "1", "--backend", "auto"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["batch", "threads"] and lines[3] == ""  # header, two rows, then the legend
    from horq.apps.bench_model import COLUMNS

    assert [line.split(":")[0] for line in lines[4 : 4 + len(COLUMNS)]] == [name for name, _ in COLUMNS]
    assert "argmax" not in "\n".join(lines)  # no agreement column against an unquantized graph on random inputs
    assert [line.split()[:2] for line in lines[1:3]] == [["1", "1"], ["4", "1"]]
    assert main(["bench", str(out), "--batch", "2", "--threads", "1", "--repeats", "1", "--warmup", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["2", "1"]  # `horq bench FILE.horq` works too

    from horq.apps.bench_model import bench_model, format_bench, torch_module

    (row,) = bench_model(out, batches=(3,), threads=(1,), repeats=1, warmup=0, backend="numpy")
    assert row["batch"] == 3 and row["backend"] == "numpy" and row["horq_ms"] > 0 and row["torch_ms"] > 0
    assert 0 < row["horq_best_ms"] <= row["horq_ms"] and 0 < row["torch_best_ms"] <= row["torch_ms"]
    md = format_bench([row], markdown=True).splitlines()
    assert md[0].startswith("| batch | threads |") and md[2].startswith("| 3 | 1 |") and md[2].endswith("| numpy |")
    # The PyTorch twin computes the float network alpha*sign(W) (inputs not quantized): same shapes, and on an
    # order-0 file (real inputs) the same numbers.
    import horq.format as hf

    f = hf.load(out)
    g = dict(f.graph_json, nodes=[dict(n, attrs=dict(n.get("attrs", {}), order=0)) if n["op"] in hf.BINARY_OPS else n
                                  for n in f.graph_json["nodes"]])
    hf.save(tmp_path / "o0.horq", g, dict(f.tensors))
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    import horq.runtime as rt

    with torch.no_grad():
        ref = torch_module(hf.load(tmp_path / "o0.horq"))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt.load(tmp_path / "o0.horq", backend="numpy")(x), ref, rtol=1e-4, atol=1e-5)


def test_errors_are_reported(tmp_path, capsys):
    bad = tmp_path / "bad.horq"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert main(["summary", str(bad)]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize("layout", [[], ["--channels-last"]])
def test_bench_training(layout, capsys, monkeypatch):
    """`horq bench training` times FP and each order on the same model and batch (channels_last: all of them in
    that memory format) and prints one row per configuration with the ratio to FP."""
    import horq.apps.bench_training as bt

    formats = []
    real = bt._Trainer.step

    def step(self):
        nhwc = [p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                for p in self.model.parameters() if p.dim() == 4 and p.shape[1] > 1]  # (a 1-channel map is both)
        formats.append(bool(nhwc) and all(nhwc))
        return real(self)

    monkeypatch.setattr(bt._Trainer, "step", step)
    assert main(["bench", "training", "--models", "mnist-cnn", "--orders", "1", "--threads", "1", "--batch", "4",
                 "--repeats", "1", *layout]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mnist-cnn |")]
    assert [r.split("|")[3:5] for r in rows] == [[" FP ", " torch "], [" 1 ", " native "]]
    assert float(rows[0].split("|")[6]) == 1.0 and float(rows[1].split("|")[6]) > 0
    assert len(formats) == 6 and set(formats) == {bool(layout)}  # 2 warm-up steps + 1 timed, per configuration
