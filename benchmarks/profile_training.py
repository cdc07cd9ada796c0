"""Where one training step's time goes: PyTorch's profiler over optimizer steps of a zoo model (the step that
`horq bench training` times: batch 64, forward, cross-entropy, backward, Adam), self CPU time per op.

    .venv/bin/python benchmarks/profile_training.py --model mnist-cnn --order fp
    .venv/bin/python benchmarks/profile_training.py --model cifar-vgg --order 1 --threads 2
    .venv/bin/python benchmarks/profile_training.py --model mnist-cnn --order 1 --channels-last
    .venv/bin/python benchmarks/profile_training.py --model mnist-cnn --order 1 --by-shape   (layer by layer)

The native binary layers show as _NativeConv2d / _NativeLinear (forward) and their Backward nodes; everything
else is PyTorch's own ops. The profiler adds its own overhead per op, so shares matter more than the totals.
"""

from __future__ import annotations

import argparse

from torch.profiler import ProfilerActivity, profile

from horq.apps.bench_training import DEFAULT_SHAPES, _set_threads, _Trainer
from horq.heap import keep_freed_memory


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--order", default="fp", help="fp, or a HORQ order 1-8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="profiled steps (after two warm-up steps)")
    ap.add_argument("--no-native", action="store_true", help="the layers' torch path instead of the native one")
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--channels-last", action="store_true", help="model and batch in channels_last")
    ap.add_argument("--by-shape", action="store_true", help="one row per op and input shapes (layer by layer)")
    args = ap.parse_args(argv)
    order = None if args.order == "fp" else int(args.order)
    _set_threads(args.threads)
    keep_freed_memory()  # as `horq train` and `horq bench training` run (horq/heap.py)
    trainer = _Trainer(args.model, order, batch=64, native=not args.no_native,
                       in_shape=DEFAULT_SHAPES.get(args.model, (3, 32, 32)), channels_last=args.channels_last)
    for _ in range(2):
        trainer.step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape) as prof:
        for _ in range(args.steps):
            trainer.step()
    events = prof.key_averages(group_by_input_shape=args.by_shape)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{args.model}, order {args.order}, {args.threads} thread(s), {args.steps} steps: self CPU "
          f"{total / 1e3 / args.steps:.1f} ms per step")
    print("| op | input shapes | self CPU ms per step | share |" if args.by_shape else
          "| op | self CPU ms per step | share |")
    print("| --- | --- | ---: | ---: |" if args.by_shape else "| --- | ---: | ---: |")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        shapes = f" {[s for s in e.input_shapes if s]} |" if args.by_shape else ""
        print(f"| {e.key} |{shapes} {e.self_cpu_time_total / 1e3 / args.steps:.1f} | "
              f"{100 * e.self_cpu_time_total / total:.0f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
