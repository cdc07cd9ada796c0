"""Page faults and step time of training steps with glibc's default malloc thresholds and with
:func:`horq.heap.keep_freed_memory`, each in a fresh process (the setting cannot be undone): a zoo model at
batch 64, full precision and HORQ orders on the native path, timed round-robin as ``horq bench training`` does.

    .venv/bin/python benchmarks/heap_faults.py [--model mnist-cnn] [--orders 1 2] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = """
import json, resource, statistics, sys
keep, name, orders, steps, threads = json.loads(sys.argv[1])
if keep:
    from horq.heap import keep_freed_memory
    assert keep_freed_memory()
import torch
from horq import kernels
from horq.apps.bench_training import DEFAULT_SHAPES, _Trainer
torch.set_num_threads(threads)  # not bench_training's _set_threads, which keeps freed memory
kernels.set_num_threads(threads)
configs = [None] + orders
trainers = [_Trainer(name, o, batch=64, native=True, in_shape=DEFAULT_SHAPES.get(name, (3, 32, 32)))
            for o in configs]
for t in trainers:
    t.step()
    t.step()
times, faults = [[] for _ in configs], [0 for _ in configs]
for _ in range(steps):
    for i, t in enumerate(trainers):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times[i].append(t.step()[0])
        faults[i] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps([[1e3 * statistics.median(ts), f / steps] for ts, f in zip(times, faults)]))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--orders", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"{args.model}, batch 64, {args.threads} thread(s), medians of {args.steps} round-robin steps")
    print("| malloc | order | step ms | page faults per step |")
    print("| --- | ---: | ---: | ---: |")
    for keep in (False, True):
        spec = json.dumps([keep, args.model, args.orders, args.steps, args.threads])
        out = subprocess.run([sys.executable, "-c", _CHILD, spec], check=True, capture_output=True, text=True)
        rows = json.loads(out.stdout.strip().splitlines()[-1])
        for order, (ms, faults) in zip(["FP", *args.orders], rows, strict=True):
            label = "keep_freed_memory" if keep else "glibc default"
            print(f"| {label} | {order} | {ms:.1f} | {faults:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
