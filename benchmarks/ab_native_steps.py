"""A/B of two settings of native training inside real steps: the steps of one zoo model (batch 64, forward,
cross-entropy, backward, Adam, as `horq bench training` times them) alternate between two settings of
horq.nn.native_train's module attributes (A, B in turn, the order swapped every other round), and the chosen
horq.kernels.train functions are timed per call shape. Prints first quartiles and medians, ms per step, per setting.

    .venv/bin/python benchmarks/ab_native_steps.py --a '{"PLANES_ANY_COLS_ORDER": 0}' --b '{}' [--model mnist-cnn]
        [--order 1] [--steps 30] [--threads 1] [--kernels nchw_rows,conv_input_grad,planes_weight_grad]

On a noisy machine this separates a change of a few percent of one kernel from the drift of the machine, which
back-to-back runs do not: both settings see the same phases of it.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time

import horq.nn.native_train as native_train
from horq.apps.bench_training import DEFAULT_SHAPES, _set_threads, _Trainer
from horq.kernels import train as ktrain


def _quartiles(ts: list[float]) -> str:
    ts = sorted(ts)
    return f"q1 {1e3 * ts[len(ts) // 4]:.2f} med {1e3 * statistics.median(ts):.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="JSON object: native_train attributes for setting A")
    ap.add_argument("--b", required=True, help="JSON object: native_train attributes for setting B")
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30, help="steps per setting")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kernels", default="nchw_rows,conv_input_grad,planes_weight_grad",
                    help="comma-separated horq.kernels.train functions to time")
    args = ap.parse_args(argv)
    settings = {"A": json.loads(args.a), "B": json.loads(args.b)}
    defaults = {}  # a key one setting changes keeps its module value in the other
    for cfg in settings.values():
        for key in cfg:
            if not hasattr(native_train, key):
                raise SystemExit(f"horq.nn.native_train has no attribute {key!r}")
            defaults[key] = getattr(native_train, key)
    _set_threads(args.threads)
    step_calls: dict = collections.defaultdict(float)
    for name in args.kernels.split(","):
        fn = getattr(ktrain, name)

        def timed(*a, _fn=fn, _name=name, **kw):
            t0 = time.perf_counter()
            out = _fn(*a, **kw)
            step_calls[(_name, tuple(getattr(a[0], "shape", ())))] += time.perf_counter() - t0
            return out

        setattr(ktrain, name, timed)
    trainer = _Trainer(args.model, args.order, batch=64, native=True,
                       in_shape=DEFAULT_SHAPES.get(args.model, (3, 32, 32)))
    for _ in range(3):
        trainer.step()
    per_call: dict = collections.defaultdict(list)
    steps: dict = {"A": [], "B": []}
    for i in range(args.steps):
        for label in ("A", "B") if i % 2 == 0 else ("B", "A"):
            for key, value in {**defaults, **settings[label]}.items():
                setattr(native_train, key, value)
            step_calls.clear()
            steps[label].append(trainer.step()[0])
            for key, t in step_calls.items():
                per_call[key + (label,)].append(t)
    print(f"{args.model}, order {args.order}, {args.threads} thread(s), {args.steps} steps per setting; "
          f"A = {args.a}, B = {args.b}")
    for key in sorted(per_call):
        name, shape, label = key
        print(f"{label} {name} {shape}: {_quartiles(per_call[key])}")
    for label, ts in steps.items():
        print(f"{label} step: {_quartiles(ts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
