"""Whole yardstick models with the AVX2 path's table GEMM on and off, alternated in one process (the switch
``_core._set_avx2_table_gemm``: off, every GEMM task takes the outer-product kernel; both give the same bits), so
that the two are compared under the same machine state: per round, for each setting, one untimed call and then
``--calls`` timed ones; medians over the rounds' timed calls.

    .venv/bin/python benchmarks/ab_avx2_table.py [--models resnet18-224 resnet18-32] [--threads 1] [--rounds 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab_common  # noqa: E402
import bench_yardstick_models as yardstick  # noqa: E402

from horq import _core, kernels  # noqa: E402
from horq.runtime import threads  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18-224", "resnet18-32"], choices=sorted(yardstick.MODELS))
    ap.add_argument("--orders", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=4)
    args = ap.parse_args(argv)
    if "avx2" not in _core.available_kernels():
        print("this CPU has no AVX2 path: nothing to compare")
        return 1
    threads.set_num_threads(args.threads)
    print(f"kernel path {kernels.info()['in_use']}, {args.threads} thread(s), batch 1; medians of {args.rounds} "
          f"rounds x {args.calls} calls per setting")
    print("| model | order | outer kernel ms | table kernel ms | table / outer |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for key, x, horq_models in ab_common.yardstick_models(args.models, args.orders):
        for order in args.orders:
            try:
                res = ab_common.alternate(horq_models[order], x, {
                    "outer": lambda: _core._set_avx2_table_gemm(False),
                    "table": lambda: _core._set_avx2_table_gemm(True)}, args.rounds, args.calls)
            finally:
                _core._set_avx2_table_gemm(True)
            outer, table = res["outer"][0], res["table"][0]
            print(f"| {key} | {order} | {outer:.2f} | {table:.2f} | {table / outer:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
