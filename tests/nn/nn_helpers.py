"""Helpers shared by the horq.nn tests (not a test module)."""

import numpy as np

from horq import reference as ref


def near_tie(x, order, axis, rel=1e-9):
    """True if a residual r_1..r_{K-1} of the reference is within ``rel`` of zero (exact zero included).

    There the sign depends on the last bit of a sum whose order numpy and torch choose differently (e.g. a
    column that is mostly zeros gives equal-magnitude residuals), so bit-exact agreement is not expected.
    """
    x = np.asarray(x, dtype=np.float64)
    scale = max(float(np.abs(x).max(initial=0.0)), 1e-300)
    _, planes, betas = ref.residual_binarize(x, order, axis=axis)
    r = x.copy()
    for k in range(order - 1):
        r = r - betas[k] * planes[k]
        if (np.abs(r) < rel * scale).any():
            return True
    return False


def run_interrupted_and_resumed(settings: dict, tmp_path, monkeypatch):
    """Trains ``settings`` (TrainSettings fields) straight through in tmp_path/a, then again in tmp_path/b with a
    Ctrl-C during the second epoch's evaluation (so b/last.pt holds the state after epoch 1) and a resume.

    Returns:
        ``(straight result, the checkpoint left by the interruption, resumed result)``.
    """
    import pytest

    import horq.nn.training as training
    from horq.nn.checkpoint import load_checkpoint
    from horq.nn.training import TrainSettings, train

    straight = train(TrainSettings(**settings, out=str(tmp_path / "a")))
    real_evaluate, calls = training.evaluate, []

    def crashing_evaluate(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_evaluate(*a, **k)

    monkeypatch.setattr(training, "evaluate", crashing_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train(TrainSettings(**settings, out=str(tmp_path / "b")))
    monkeypatch.setattr(training, "evaluate", real_evaluate)
    interrupted = load_checkpoint(tmp_path / "b" / "last.pt")
    resumed = train(TrainSettings(**settings, out=str(tmp_path / "b"), resume=True))
    return straight, interrupted, resumed
