"""Wall-clock timing for benchmarks: medians of repeated runs after warm-up (these machines are noisy)."""

from __future__ import annotations

import random
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
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= max_reps:
            break
    return statistics.median(times), min(times)


def interleaved_samples(fns: dict, *, min_reps: int, min_seconds: float, max_reps: int = 200, block: int = 1,
                        shuffle: bool = True) -> dict[str, list[float]]:
    """``{name: [seconds, ...]}``: every timed call of each function, timed round-robin (``block`` calls of each
    per round), after one warm-up call each; at least ``min_reps`` rounds and ``min_seconds`` per function.

    The machine is shared, so its load drifts over seconds; interleaving gives every contender the same
    load, which makes the ratios between them far steadier than timing one after the other. With ``block`` 1
    each call follows another contender's calls, so it finds the caches holding their data ("cold": what a
    model meets between other heavy work); with ``block`` > 1 only the calls after the first of each block are
    counted, each following a call of the same function ("warm": a model called in a loop). The first round
    calls them in the given order, every later one in a shuffled order (seeded: the same every time), so each
    follows every other one about equally often: in a fixed order (or a rotated one: the same neighbours) a cold
    call always came after the same neighbour, and found the caches holding what that neighbour had just read or
    run (the same input array, the same code) or not, the same way every round. ``shuffle=False`` keeps the given
    order in every round (to show what that does: benchmarks/cold_calls.py).
    """
    if min_reps < 1:
        raise ValueError(f"min_reps must be >= 1, got {min_reps}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    for fn in fns.values():
        fn()  # warm-up (also builds caches such as the conv weight layout)
    order, rng = list(fns), random.Random(0)
    times: dict[str, list[float]] = {k: [] for k in order}
    start, rounds = time.perf_counter(), 0
    while True:
        for k in order:
            fn = fns[k]
            for i in range(block):
                t0 = time.perf_counter()
                fn()
                if block == 1 or i > 0:
                    times[k].append(time.perf_counter() - t0)
        rounds += 1
        if rounds >= max_reps or (rounds >= min_reps and time.perf_counter() - start >= min_seconds * len(fns)):
            break
        if shuffle:
            rng.shuffle(order)
    return times


def interleaved_times(fns: dict, *, min_reps: int, min_seconds: float, max_reps: int = 200, block: int = 1) -> dict:
    """``{name: (median, fastest)}`` seconds of each function's calls in :func:`interleaved_samples` (same
    arguments)."""
    samples = interleaved_samples(fns, min_reps=min_reps, min_seconds=min_seconds, max_reps=max_reps, block=block)
    return {k: (statistics.median(v), min(v)) for k, v in samples.items()}
