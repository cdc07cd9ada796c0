"""Training loop: loss goes down, checkpoints resume exactly, init-from, the CLI wrapper."""

import json

import pytest
import torch
from nn_helpers import run_interrupted_and_resumed

import horq.nn.training as training
from horq.apps.cli import main
from horq.nn.checkpoint import load_checkpoint, load_model
from horq.nn.training import TrainSettings, train

# scikit-learn's 8x8 digits: embedded, real and small enough for a few seconds of training.
TINY = dict(model="mnist-mlp", data="digits", limit_train=512, limit_test=200, batch_size=32, threads=1,
            progress=False, lr=2e-3)


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("order", [None, 2])
def test_loss_goes_down(tmp_path, order):
    summary = train(TrainSettings(**TINY, order=order, epochs=3, out=str(tmp_path))).summary
    losses = [r["train_loss"] for r in summary["epochs"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert summary["final_test_acc"] > 0.5  # 10 classes: chance is 0.1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2, 3]
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 4
    model, ckpt = load_model(tmp_path / "last.pt")
    assert ckpt["epoch"] == 3 and not model.training


def test_resume_continues_exactly(tmp_path, monkeypatch):
    settings = dict(TINY, order=1, epochs=3, schedule="cosine")
    straight, interrupted, resumed = run_interrupted_and_resumed(settings, tmp_path, monkeypatch)
    assert interrupted["epoch"] == 1
    a, b = _params(straight.model), _params(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert [r["train_loss"] for r in resumed.summary["epochs"]] == [r["train_loss"] for r in straight.summary["epochs"]]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TrainSettings(**TINY, order=1, epochs=1, out=str(tmp_path), resume=True))


def test_init_from_full_precision(tmp_path):
    fp = train(TrainSettings(**TINY, order=None, epochs=2, out=str(tmp_path / "fp"))).summary
    tuned = train(TrainSettings(**{**TINY, "lr": 5e-4}, order=2, epochs=1, out=str(tmp_path / "h2"),
                                init_from=str(tmp_path / "fp" / "last.pt"))).summary
    # Starting from trained FP weights, one epoch of HORQ-2 fine-tuning is far above chance.
    assert tuned["final_test_acc"] > 0.6, (fp["final_test_acc"], tuned["final_test_acc"])
    with pytest.raises(ValueError, match="holds a 'mnist-mlp' model"):
        train(TrainSettings(**dict(TINY, model="mnist-cnn"), order=2, epochs=1, out=str(tmp_path / "x"),
                            init_from=str(tmp_path / "fp" / "last.pt")))


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch size"), (dict(lr=0.0), "learning rate"),
    (dict(schedule="linear"), "schedule"), (dict(device="tpu"), "device"),
])
def test_bad_settings(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        train(TrainSettings(**{**TINY, **bad}, out=str(tmp_path)))


def test_cli_train_and_eval(tmp_path, capsys):
    rc = main(["train", "--model", "mnist-mlp", "--data", "digits", "--order", "2", "--epochs", "1",
               "--limit-train", "256", "--limit-test", "100", "--threads", "1", "--no-progress",
               "--out", str(tmp_path)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["world_size"] == 1 and 0.0 <= summary["final_test_acc"] <= 1.0
    assert summary["device"] == "cpu"  # `auto` where no GPU is seen (tests/conftest.py hides one)
    assert main(["eval", str(tmp_path / "last.pt"), "--limit", "100"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n"] == 100 and ev["accuracy"] == pytest.approx(summary["final_test_acc"], abs=1e-6)


def test_channels_last_training_and_its_checkpoint(tmp_path, capsys):
    """`horq train --channels-last`: the convolutional model and its batches in channels_last (the native binary
    layers then read and write NHWC memory), the run learns, and its checkpoint holds the trained values (in
    whatever layout) and loads into a plain model as any other."""
    out = tmp_path / "cl"
    rc = main(["train", "--model", "mnist-cnn", "--data", "digits", "--order", "2", "--epochs", "3", "--limit-train",
               "512", "--limit-test", "200", "--batch-size", "32", "--threads", "1", "--no-progress",
               "--channels-last", "--out", str(out)])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["final_test_acc"] > 0.5  # 10 classes: chance is 0.1
    metrics = json.loads((out / "metrics.json").read_text())
    losses = [r["train_loss"] for r in metrics["epochs"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert metrics["settings"]["channels_last"] is True
    ckpt = load_checkpoint(out / "last.pt")
    conv_weights = [v for k, v in ckpt["model"].items() if v.dim() == 4 and v.shape[1] > 1]
    assert conv_weights and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                                for w in conv_weights)  # trained in channels_last
    model, _ = load_model(out / "last.pt")
    for name, value in model.state_dict().items():
        assert torch.equal(value, ckpt["model"][name]), name


def test_cli_errors_are_messages(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", str(tmp_path / "junk.pt")]) == 2
    assert "not a readable horq checkpoint" in capsys.readouterr().err


def test_model_args_reach_the_model_checkpoint_and_export(tmp_path, capsys):
    """--model-arg sets architecture options (here mnist-mlp's hidden width): the trained model has them,
    the checkpoint rebuilds it, export and resume follow, and an unknown option is a clear error."""
    out = tmp_path / "run"
    rc = main(["train", "--model", "mnist-mlp", "--model-arg", "hidden=48", "--data", "digits", "--order", "2",
               "--epochs", "1", "--limit-train", "128", "--limit-test", "50", "--threads", "1", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    capsys.readouterr()
    model, ckpt = load_model(out / "last.pt")
    assert ckpt["model_kwargs"]["hidden"] == 48
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)][:2] == [48, 48]
    assert main(["export", str(out / "last.pt"), "-o", str(tmp_path / "m.horq")]) == 0
    with pytest.raises(ValueError, match="model options"):
        train(TrainSettings(**TINY, model_args={"hidden": 64}, order=2, epochs=2, out=str(out), resume=True))
    with pytest.raises(ValueError, match=r"has no option\(s\) \['depth'\].*hidden"):
        train(TrainSettings(**TINY, model_args={"depth": 3}, order=2, epochs=1, out=str(tmp_path / "x")))
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        main(["train", "--model-arg", "hidden", "--out", str(tmp_path / "y")])
    assert exit_info.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err


def test_resume_with_more_epochs_and_a_new_lr_follows_the_new_schedule(tmp_path, capsys):
    """--resume with a larger --epochs and a new --lr: the cosine schedule is the one planned for the new values,
    continued at the checkpoint's epoch (no epoch at learning rate 0), and metrics.json says so."""
    import math

    settings = dict(TINY, order=1, schedule="cosine", out=str(tmp_path))
    train(TrainSettings(**{**settings, "lr": 0.01}, epochs=2))
    train(TrainSettings(**{**settings, "lr": 0.004}, epochs=4, resume=True))
    assert "epochs 2 -> 4, lr 0.01 -> 0.004" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    lrs = [r["lr"] for r in metrics["epochs"]]
    cosine = [0.01, 0.01 * (1 + math.cos(math.pi / 2)) / 2]
    cosine += [0.004 * (1 + math.cos(math.pi * e / 4)) / 2 for e in (2, 3)]
    assert lrs == pytest.approx(cosine) and min(lrs) > 0
    assert metrics["settings"]["epochs"] == 4 and metrics["settings"]["lr"] == 0.004
    first, second = metrics["history"]
    assert (first["start_epoch"], first["settings"]["epochs"], first["settings"]["lr"]) == (0, 2, 0.01)
    assert second["start_epoch"] == 2 and second["changed"] == {"epochs": [2, 4], "lr": [0.01, 0.004]}
    assert load_checkpoint(tmp_path / "last.pt")["history"] == metrics["history"]
    with pytest.raises(ValueError, match="already completed 4 epoch"):
        train(TrainSettings(**settings, epochs=4, resume=True))


def test_train_cli_defaults_are_the_settings_defaults():
    """`horq train` leaves unset flags to TrainSettings, and its help quotes the same defaults."""
    from horq.apps.cli import build_parser
    from horq.apps.train import settings_from_args
    from horq.apps.train_cli import DEVICES as CLI_DEVICES
    from horq.apps.train_cli import SCHEDULES as CLI_SCHEDULES

    args = build_parser().parse_args(["train"])
    assert settings_from_args(args) == TrainSettings()
    assert (CLI_SCHEDULES, CLI_DEVICES) == (training.SCHEDULES, training.DEVICES)
    d = TrainSettings()
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    for quoted in (f"(default {d.epochs})", f"(default {d.batch_size})", f"(default {d.lr})", f"(default {d.schedule})",
                   f"{d.model} (default)", f"{d.data} (default)", f"(default {d.out})", f"default {d.order})"):
        assert quoted in text, quoted


def test_first_ctrl_c_stops_at_a_batch_boundary_second_at_once():
    import os
    import signal

    with training._ctrl_c_between_batches(True) as stop_requested:
        assert not stop_requested()
        os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread before kill returns
        assert stop_requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with training._ctrl_c_between_batches(False) as stop_requested:  # distributed ranks: the default behaviour
        assert not stop_requested() and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_more_processes_than_gpus_is_an_error_before_any_process_starts(tmp_path, capsys, monkeypatch):
    """NCCL refuses two ranks on one GPU: `--nproc` beyond the GPUs torch sees with `--device cuda` (or that
    without a GPU) is a one-line error, checked before torchrun starts; `--device auto` takes CUDA only where
    every process gets a GPU, and the CPU otherwise."""
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(training.torch.cuda, "device_count", lambda: 1)
    launched = []
    monkeypatch.setattr("subprocess.call", lambda *a, **k: launched.append(a) or 0)
    rc = main(["train", "--nproc", "2", "--device", "cuda", "--model", "mnist-mlp", "--data", "digits",
               "--epochs", "1", "--no-progress", "--out", str(tmp_path)])
    assert rc == 2
    assert "2 processes on CUDA need one GPU each, but torch sees 1 on this machine" in capsys.readouterr().err
    assert not launched
    for device in ("cpu", "auto"):
        assert main(["train", "--nproc", "2", "--device", device, "--model", "mnist-mlp", "--data", "digits",
                     "--epochs", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    assert len(launched) == 2  # CPU processes need no GPU (the launch itself is stubbed here)
    assert training.device_kind("auto") == "cuda" and training.device_kind("auto", 2) == "cpu"
    training.check_gpus_for("cuda", 1)
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    assert training.device_kind("auto") == "cpu"
    with pytest.raises(ValueError, match="--device cuda was asked for, but torch sees no CUDA device"):
        training.check_gpus_for("cuda", 1)
    training.check_gpus_for("cpu", 8)


def test_full_float32_is_nothing_on_cpu_and_gpu_generators_are_optional():
    from horq.nn.checkpoint import rng_state, set_rng_state

    with training.full_float32(torch.device("cpu")):
        pass
    state = rng_state()
    if not torch.cuda.is_initialized():
        assert "cuda" not in state
    # a checkpoint written on more GPUs than this machine has (or on a GPU, read on CPU): the GPUs' generators
    # are skipped, the rest restored
    expected = torch.rand(3)
    set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * 9})
    assert torch.equal(torch.rand(3), expected)
