"""What the A/B scripts (benchmarks/ab_*.py) share: the yardstick's whole models built and exported once per order,
and a model called under two or more settings alternated in one process, so that they are compared under the same
machine state: per round, for each setting, one untimed call and then ``calls`` timed ones; medians over the
rounds' timed calls."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_yardstick_models as yardstick  # noqa: E402


def yardstick_models(keys, orders) -> Iterator[tuple[str, np.ndarray, dict]]:
    """(key, a batch-1 input, {order: loaded horq model}) for each yardstick model key (bench_yardstick_models)."""
    for key in keys:
        name, shape, classes = yardstick.MODELS[key]
        model = yardstick.float_model(name, shape, classes)
        with tempfile.TemporaryDirectory() as tmp:
            horq_models = yardstick.horq_models(model, shape, tmp, orders=tuple(orders))
        yield key, np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32), horq_models


def alternate(model, x, settings: dict[str, Callable[[], None]], rounds: int,
              calls: int) -> dict[str, tuple[float, np.ndarray]]:
    """Each setting's median call in ms and its last output: per round, each setting applied (its callable), one
    untimed call, then ``calls`` timed ones."""
    times: dict[str, list[float]] = {name: [] for name in settings}
    outputs = {}
    for _ in range(rounds):
        for name, apply in settings.items():
            apply()
            outputs[name] = np.asarray(model(x))
            for _ in range(calls):
                t0 = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t0)
    return {name: (1e3 * statistics.median(times[name]), outputs[name]) for name in settings}
