"""Where one of the yardstick's whole models spends a call: the model built, converted at one order and exported
as benchmarks/bench_yardstick_models.py does (random weights, non-trivial BatchNorm statistics), loaded on the
native runtime and profiled per node (``Model.profile``), 1 thread unless --threads, batch 1 unless --batch; then the
median of plain calls.

    .venv/bin/python benchmarks/profile_model.py [--model resnet18-32] [--order 1] [--repeats 50] [--threads 1]
                                                 [--batch 1] [--chains]

With --chains, the plain calls alternate with calls of the same program run step by step from Python (its runs of
core steps not chained, horq.runtime.program.Program), and both are reported: fastest, first quartile and median.

Models: the keys of bench_yardstick_models.MODELS (resnet18-224, resnet18-32, cifar-vgg, mnist-cnn).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_yardstick_models as yardstick  # noqa: E402

from horq import kernels  # noqa: E402
from horq.runtime import threads  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18-32", choices=sorted(yardstick.MODELS))
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="images per call")
    ap.add_argument("--chains", action="store_true", help="also time the program step by step, alternated")
    args = ap.parse_args(argv)
    threads.set_num_threads(args.threads)
    name, shape, classes = yardstick.MODELS[args.model]
    model = yardstick.float_model(name, shape, classes)
    with tempfile.TemporaryDirectory() as tmp:
        horq_model = yardstick.horq_models(model, shape, tmp, orders=(args.order,))[args.order]
    x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
    path = kernels.info()["in_use"]
    print(f"{args.model}, order {args.order}, kernel path {path}, {args.threads} thread(s), batch {args.batch}")
    print(horq_model.profile(x, repeats=args.repeats).format())
    if args.chains:
        chained = horq_model._program
        unchained = copy.copy(chained)
        unchained.runs = list(chained.calls)  # every step from Python
        if not np.array_equal(chained(x), unchained(x)):
            raise SystemExit("chained and step-by-step outputs differ")
        times = {"chained": [], "step by step": []}
        for _ in range(args.repeats * 4):
            for label, prog in (("chained", chained), ("step by step", unchained)):
                t0 = time.perf_counter()
                prog(x)
                times[label].append(time.perf_counter() - t0)
        for label, ts in times.items():
            ts.sort()
            print(f"{label}: fastest {1e3 * ts[0]:.3f} ms, first quartile {1e3 * ts[len(ts) // 4]:.3f}, median "
                  f"{1e3 * statistics.median(ts):.3f} over {len(ts)} (alternated)")
        return 0
    times = []
    for _ in range(args.repeats * 4):
        t0 = time.perf_counter()
        horq_model(x)
        times.append(time.perf_counter() - t0)
    print(f"plain calls: median {1e3 * statistics.median(times):.3f} ms over {len(times)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
