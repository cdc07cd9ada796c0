"""What a "cold" call of the layer yardstick measures (docs/KERNELS.md round 37), in two parts.

    .venv/bin/python benchmarks/cold_calls.py [--layer 64 56] [--rounds 60]

1. One yardstick row (a 3x3 layer, C channels, S x S, batch 1, 1 thread: horq orders 1-3, PyTorch fp32, OpenVINO fp32
   and binary when installed), its contenders called one after the other, four ways: in a fixed order or shuffled
   anew every round, all reading one input array or each its own copy. In a fixed order a contender always follows
   the same neighbour, and when they share the input it finds that array just read (horq order 2 after order 1, say)
   or not (order 1 after OpenVINO's binary convolution, whose input is a copy of its own).
2. The cost of a cold call itself: horq order 1 on a 64-channel 8x8 map (a few KB of data) and numpy's add of two
   16-float arrays, each called right after 64 MB were written (the caches hold none of their code or data) and
   called in a loop (warm).

Medians in ms (part 2 in us); nothing here is a target figure, only how the figures depend on the method.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_yardstick import openvino_setup  # noqa: E402

from horq import kernels  # noqa: E402
from horq.timing import interleaved_samples  # noqa: E402


def row_contenders(c: int, size: int, own: bool) -> dict:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
    pw = kernels.pack_weights(w)
    inp = (lambda: x.copy()) if own else (lambda: x)
    fns = {f"horq{o}": partial(kernels.Conv2dLayer(pw, order=o, stride=1, padding=1), inp()) for o in (1, 2, 3)}
    fns["torch_fp32"] = partial(torch.nn.functional.conv2d, torch.from_numpy(inp()), torch.from_numpy(w), padding=1)
    ov = openvino_setup(1)
    if ov is not None:
        fns["ov_fp32"] = ov["fp32"](inp(), w, 1, 1)
        fns["ov_binary"] = ov["binary"](x, w, 1, 1)  # its own {0, 1} copy either way
    return fns


def medians(fns: dict, rounds: int, shuffle: bool) -> dict:
    samples = interleaved_samples(fns, min_reps=rounds, min_seconds=0.0, max_reps=rounds, shuffle=shuffle)
    return {k: statistics.median(v) for k, v in samples.items()}


def cold_and_warm(fn, flush, calls: int = 300) -> tuple[float, float]:
    fn()
    cold, warm = [], []
    for _ in range(calls):
        flush()
        t0 = time.perf_counter()
        fn()
        cold.append(time.perf_counter() - t0)
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    return statistics.median(cold), statistics.median(warm)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layer", type=int, nargs=2, default=[64, 56], metavar=("C", "S"))
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args(argv)
    kernels.set_num_threads(1)
    torch.set_num_threads(1)
    c, size = args.layer
    print(f"kernel path {kernels.info()['in_use']}, CPU {kernels.info()['cpu']}; {c}ch {size}x{size}, 3x3, batch 1, "
          f"1 thread, {args.rounds} rounds")
    with torch.no_grad():
        for own in (False, True):
            for shuffle in (False, True):
                med = medians(row_contenders(c, size, own), args.rounds, shuffle)
                print(f"{'own inputs' if own else 'one input '} {'shuffled' if shuffle else 'fixed   '}: "
                      + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in med.items())
                      + f"; order 2 / order 1 {med['horq2'] / med['horq1']:.2f}")
    big = np.zeros(64 << 20, np.uint8)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)
    layer = kernels.Conv2dLayer(kernels.pack_weights(rng.standard_normal((64, 64, 3, 3)).astype(np.float32)), order=1,
                                stride=1, padding=1)
    a, b, out = np.ones(16, np.float32), np.ones(16, np.float32), np.empty(16, np.float32)
    for label, fn in (("horq order 1, 64ch 8x8", partial(layer, x)), ("numpy add, 16 floats", partial(np.add, a, b,
                                                                                                       out=out))):
        cold, warm = cold_and_warm(fn, lambda: big.__iadd__(1))
        print(f"{label}: after 64 MB written {cold * 1e6:.1f} us, in a loop {warm * 1e6:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
