"""Where the native training path's time goes, kernel call by kernel call: the functions of horq.kernels.train
(and the PyTorch input-gradient fallback) wrapped with timers during real optimizer steps of a zoo model (the
step `horq bench training` times: batch 64, forward, cross-entropy, backward, Adam), summed per function and
input shape, ms per step.

    .venv/bin/python benchmarks/profile_native_training.py --model mnist-cnn --order 2 [--threads 1] [--steps 20]
        [--channels-last]

Complements benchmarks/profile_training.py (PyTorch's profiler, per op): this one names the C++ kernel and
the layer shape behind each native node.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import horq.nn.native_train as native_train
from horq.apps.bench_training import DEFAULT_SHAPES, _set_threads, _Trainer
from horq.heap import keep_freed_memory
from horq.kernels import train as ktrain

KERNELS = ["binarize_weight_rows", "binary_weight_grad", "conv2d_keep", "linear_keep", "planes_weight_grad",
           "conv_input_grad", "linear_input_grad", "linear_weight_grad", "expand_columns", "clip_window",
           "nchw_rows"]


def _wrap(module, name: str, totals: dict) -> None:
    fn = getattr(module, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        shapes = tuple(tuple(a.shape) for a in args[:2] if hasattr(a, "shape"))
        totals[(name, shapes)] += time.perf_counter() - t0
        return out

    setattr(module, name, timed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after three warm-up steps)")
    ap.add_argument("--channels-last", action="store_true", help="model and batch in channels_last")
    args = ap.parse_args(argv)
    _set_threads(args.threads)
    keep_freed_memory()  # as `horq train` and `horq bench training` run (horq/heap.py)
    totals: dict = collections.defaultdict(float)
    for name in KERNELS:
        _wrap(ktrain, name, totals)
    _wrap(native_train, "_torch_input_grad", totals)
    trainer = _Trainer(args.model, args.order, batch=64, native=True,
                       in_shape=DEFAULT_SHAPES.get(args.model, (3, 32, 32)), channels_last=args.channels_last)
    for _ in range(3):
        trainer.step()
    totals.clear()
    steps = [trainer.step()[0] for _ in range(args.steps)]
    print(f"{args.model}, order {args.order}, {args.threads} thread(s): median step "
          f"{1e3 * statistics.median(steps):.1f} ms over {args.steps} steps")
    print("| function | argument shapes | ms per step |")
    print("| --- | --- | ---: |")
    for (name, shapes), t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {' '.join(str(s) for s in shapes)} | {1e3 * t / args.steps:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
