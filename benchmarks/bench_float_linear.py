"""A float linear layer at small batches: the core's float_linear (horq.kernels.FloatLinear, what the native runtime
runs for up to native.FLOAT_LINEAR_MAX_ROWS rows) against numpy's product as the numpy runtime op computes it
(``x @ W.T + b``, BLAS at one thread as the runtime sets it), in one process, timed round-robin.

    .venv/bin/python benchmarks/bench_float_linear.py [--threads 1 2] [--rows 1 2 4 8 16 32] [--seconds 1]

Cold: each round first writes a 64 MB buffer, so every call finds its weights in memory, not in a cache (a
classifier after a network's other layers; each contender has its own copy of the weights, so neither warms the
other's); warm: rounds of blocks of calls of the same contender (horq.timing.interleaved_times, block 5). Medians
(ms) and their ratio numpy / core. Shapes: ResNet-18's 224x224 classifier (1000 x 512) and a 32x32 one (10 x 512).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from horq import kernels
from horq.apps.bench_kernels import cpu_flags
from horq.runtime import threads
from horq.timing import interleaved_times

SHAPES = {"resnet18-224 classifier": (1000, 512), "resnet18-32 classifier": (10, 512)}
FLUSH_FLOATS = 16 << 20  # 64 MB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args(argv)
    info = kernels.info()
    print(f"CPU: {info.get('cpu', '?')}; flags: {cpu_flags()}; kernel path {info['in_use']}")
    rng = np.random.default_rng(0)
    flush = np.zeros(FLUSH_FLOATS, np.float32)

    def evict():
        flush[::16] += 1.0  # one write per 64-byte line

    print("| layer | rows | threads | numpy cold | core cold | numpy / core | numpy warm | core warm | numpy / core |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, (m, n) in SHAPES.items():
        w = (rng.standard_normal((m, n)) / np.sqrt(n)).astype(np.float32)
        b = (0.1 * rng.standard_normal(m)).astype(np.float32)
        w_np, b_np = w.copy(), b.copy()
        layer = kernels.FloatLinear(w.copy(), bias=b.copy())
        for rows in args.rows:
            x = rng.standard_normal((rows, n)).astype(np.float32)
            fns = {"numpy": lambda x=x, w=w_np, b=b_np: np.add(x @ w.T, b), "core": lambda x=x, f=layer: f(x)}
            for t in args.threads:
                threads.set_num_threads(t)
                cold = interleaved_times({"evict": evict, **fns}, min_reps=20, min_seconds=args.seconds)
                warm = interleaved_times(fns, min_reps=10, min_seconds=args.seconds / 2, block=5)
                c = [1e3 * cold[k][0] for k in fns]
                h = [1e3 * warm[k][0] for k in fns]
                print(f"| {label} | {rows} | {t} | {c[0]:.3f} | {c[1]:.3f} | {c[0] / c[1]:.2f} | {h[0]:.3f} | "
                      f"{h[1]:.3f} | {h[0] / h[1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
