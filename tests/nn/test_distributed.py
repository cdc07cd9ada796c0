"""Multi-process training with torchrun (gloo on CPU) and the CUDA code path."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from horq.nn.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*args, check=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_gloo_train_and_resume(tmp_path):
    straight = tmp_path / "straight"
    _torchrun(WORKER, straight, 3, 0)
    r0 = torch.load(straight / "rank0.pt", weights_only=True)
    r1 = torch.load(straight / "rank1.pt", weights_only=True)
    assert _equal(r0, r1), "DDP ranks diverged"
    ckpt = load_checkpoint(straight / "last.pt")
    losses = [r["train_loss"] for r in ckpt["metrics"]]
    assert losses[-1] < losses[0], losses

    # An interrupted 2-process job (dies in epoch 2's evaluation), resumed through the CLI's --nproc shortcut,
    # ends with the same parameters as the uninterrupted one.
    resumed = tmp_path / "resumed"
    proc = _torchrun(WORKER, resumed, 3, 2, check=False)
    assert proc.returncode != 0
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 1
    cmd = [sys.executable, "-m", "horq", "train", "--nproc", "2", "--model", "mnist-mlp", "--data", "digits",
           "--limit-train", "512", "--limit-test", "200", "--batch-size", "32", "--threads", "1", "--order", "2",
           "--epochs", "3", "--no-progress", "--resume", "--out", str(resumed)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = load_checkpoint(resumed / "last.pt")
    assert final["epoch"] == 3
    assert _equal(final["model"], r0), "resumed DDP run differs from the uninterrupted one"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_training_step(tmp_path):
    from horq.nn.training import TrainSettings, train

    result = train(TrainSettings(model="mnist-cnn", data="digits", limit_train=256, limit_test=64, order=2,
                                 epochs=1, device="cuda", progress=False, out=str(tmp_path)))
    assert next(result.model.parameters()).is_cuda
    assert 0.0 <= result.summary["final_test_acc"] <= 1.0
