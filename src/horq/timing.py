"""Wall-clock timing for benchmarks: medians of repeated runs after warm-up (these machines are noisy)."""

from __future__ import annotations

import statistics
import time


def run_times(fn, *, repeats: int, warmup: int = 2) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, *, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    return statistics.median(run_times(fn, repeats=repeats, warmup=warmup))


def median_and_best(fn, *, min_reps: int, min_seconds: float, max_reps: int = 200) -> tuple[float, float]:
    """``(median, fastest)`` seconds of ``fn()``: one warm-up call, then at least ``min_reps`` runs and at least
    ``min_seconds`` of them (at most ``max_reps``). The fastest run is the one least disturbed by other work.
    """
    fn()  # warm-up (also builds caches such as a conv weight layout)
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= max_reps:
            break
    return statistics.median(times), min(times)
