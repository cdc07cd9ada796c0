"""Whole yardstick models with their float first layers computed directly and by Winograd tiles, alternated in one
process (each of the model's ``kernels.FloatConv2d`` steps re-prepared with ``algorithm="direct"`` or
``"winograd"``; layers the tiles do not take stay direct; ab_common.alternate: per round, for each setting, one
untimed call and then ``--calls`` timed ones; medians over the rounds' timed calls). Also the largest difference
between the two settings' outputs (they agree to float rounding in the first layer; a binary layer after it may
flip a sign where an input sits at its threshold).

    .venv/bin/python benchmarks/ab_float_conv.py [--models resnet18-224] [--orders 1 2] [--threads 1] [--rounds 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab_common  # noqa: E402
import bench_yardstick_models as yardstick  # noqa: E402

from horq import kernels  # noqa: E402
from horq.runtime import threads  # noqa: E402

_made: list = []  # every FloatConv2d the models built


class _Switchable(kernels.FloatConv2d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _made.append(self)


def _set(algorithm: str) -> None:
    for conv in _made:
        if conv.algorithm != algorithm:
            conv.algorithm, conv._shape = algorithm, None  # prepared again at the next call


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18-224"], choices=sorted(yardstick.MODELS))
    ap.add_argument("--orders", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=4)
    args = ap.parse_args(argv)
    threads.set_num_threads(args.threads)
    kernels.FloatConv2d = _Switchable  # the runtime's float_conv_step builds its steps through this name
    print(f"kernel path {kernels.info()['in_use']}, {args.threads} thread(s), batch 1; medians of {args.rounds} "
          f"rounds x {args.calls} calls per setting")
    print("| model | order | direct ms | winograd ms | winograd / direct | max abs output difference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key, x, horq_models in ab_common.yardstick_models(args.models, args.orders):
        for order in args.orders:
            try:
                res = ab_common.alternate(horq_models[order], x, {
                    "direct": lambda: _set("direct"), "winograd": lambda: _set("winograd")}, args.rounds, args.calls)
            finally:
                _set("auto")
            (direct, y_direct), (wino, y_wino) = res["direct"], res["winograd"]
            diff = float(np.max(np.abs(y_direct - y_wino)))
            print(f"| {key} | {order} | {direct:.2f} | {wino:.2f} | {wino / direct:.3f} | {diff:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
