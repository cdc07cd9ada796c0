"""Run by torchrun in tests/nn/test_distributed.py: one rank of a tiny DDP training job.

Usage: ddp_worker.py OUT EPOCHS CRASH_AT_EVAL — CRASH_AT_EVAL > 0 raises during that evaluation (an
interrupted job); each rank saves its final parameters to OUT/rank{R}.pt.
"""

import sys

import torch

import horq.nn.training as training
from horq.nn.training import TrainSettings, train

out, epochs, crash_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if crash_at:
    real, calls = training.evaluate, [0]

    def evaluate(*a, **k):
        calls[0] += 1
        if calls[0] == crash_at:
            raise RuntimeError("simulated interruption")
        return real(*a, **k)

    training.evaluate = evaluate

result = train(TrainSettings(model="mnist-mlp", data="digits", limit_train=512, limit_test=200, batch_size=32,
                             threads=1, progress=False, order=2, epochs=epochs, out=out))
torch.save({k: v.detach().clone() for k, v in result.model.state_dict().items()},
           f"{out}/rank{result.summary['rank']}.pt")
