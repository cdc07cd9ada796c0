"""Two or more builds of the native extension compared on whole yardstick models: each model (bench_yardstick_models,
random weights, non-trivial BatchNorm statistics; or bench_mobilenet.py's MobileNetV2, --models mobilenet-v2) exported
once per order with the installed package, then per round each build in a process of its own (the build imported as
horq._core, the .horq file loaded on the native runtime, a few untimed calls, then --calls timed plain calls), the
builds in turn, so that they see the same machine state (these VMs drift by 10% and more within minutes). The models are
exported in a process of their own, so no PyTorch threads share the CPUs with the timed runs. Per build, model and
order: the median over rounds of each round's median call (range over rounds), and each later build's ratio to the
first. Each run first calls the model for half a second (at least 3 calls). Runs of one build differ by up to ~30% from
process to process on these VMs (every step of a batch-8 ResNet-18 224x224 alike, with the same files): only rounds
alternated between the builds compare them.

    .venv/bin/python benchmarks/ab_models.py A.so B.so [--models resnet18-32] [--orders 1] [--threads 1]
        [--batch 1] [--rounds 6] [--calls 40] [--cpu 0] [--path generic]

A.so / B.so: copies of the extension (build/<wheel tag>/_core.*.so) made before and after a change. At one thread
each run is pinned to one CPU (--cpu, default the first allowed: unpinned, a batch-8 ResNet-18 224x224 ran in 39-41 ms
against 29.7-30.1 pinned, the system moving the process between this VM's two vCPUs); at more threads it is not
pinned. --path forces a kernel path (HORQ_KERNEL).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Run once, in a process of its own (PyTorch and its threads stay out of the process that runs the timed ones):
# argv = benchmarks folder, output folder, batch, orders (comma-separated), models; writes {model}/o{K}.horq and
# {model}/x.npy (the input) for each, or exits with 2 naming an unknown model. "mobilenet-v2" is bench_mobilenet.py's
# MobileNetV2 at 224x224 (its order 0: the float model).
EXPORT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import bench_yardstick_models as yardstick
from pathlib import Path
out, batch, orders, keys = Path(sys.argv[2]), int(sys.argv[3]), [int(o) for o in sys.argv[4].split(",")], sys.argv[5:]
known = sorted([*yardstick.MODELS, "mobilenet-v2"])
unknown = [k for k in keys if k not in known]
if unknown:
    print(f"--models: unknown model {unknown[0]!r} (one of {', '.join(known)})", file=sys.stderr)
    sys.exit(2)
for key in keys:
    (out / key).mkdir()
    if key == "mobilenet-v2":
        import bench_mobilenet
        import horq
        shape = (3, 224, 224)
        for order in orders:
            horq.export(bench_mobilenet.variant(order or None), out / key / f"o{order}.horq", input_shape=shape)
    else:
        name, shape, classes = yardstick.MODELS[key]
        yardstick.horq_models(yardstick.float_model(name, shape, classes), shape, out / key, orders=tuple(orders))
    np.save(out / key / "x.npy", np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32))
"""

# Run in each timed child: argv = build, model file, input file, threads, calls, cpu (-1: not pinned).
CHILD = r"""
import importlib.util, json, os, statistics, sys, time
build, model_path, input_path, threads, calls, cpu = sys.argv[1:7]
if int(cpu) >= 0 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {int(cpu)})
import numpy as np
spec = importlib.util.spec_from_file_location("horq._core", build)
core = importlib.util.module_from_spec(spec)
sys.modules["horq._core"] = core
spec.loader.exec_module(core)
from horq import kernels, runtime
from horq.runtime import threads as rt_threads
rt_threads.set_num_threads(int(threads))
model = runtime.load(model_path, backend="native")
x = np.load(input_path)
t_end = time.perf_counter() + 0.5  # warm-up: at least 3 calls and half a second
n = 0
while n < 3 or time.perf_counter() < t_end:
    model(x)
    n += 1
ts = []
for _ in range(int(calls)):
    t0 = time.perf_counter()
    model(x)
    ts.append(time.perf_counter() - t0)
print(json.dumps({"path": kernels.info()["in_use"], "ms": 1e3 * statistics.median(ts)}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", type=Path, help="extension files, in the order each round runs them")
    ap.add_argument("--models", nargs="+", default=["resnet18-32"],
                    help="bench_yardstick_models.MODELS keys, or mobilenet-v2 (bench_mobilenet.py's; order 0: float)")
    ap.add_argument("--orders", nargs="+", type=int, default=[1])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="images per call")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=40, help="timed calls per model, order, build and round")
    ap.add_argument("--cpu", type=int, default=None, help="the CPU one-thread runs are pinned to")
    ap.add_argument("--path", default="", help="kernel path (default: the best this CPU has)")
    args = ap.parse_args(argv)
    if len(args.builds) < 2:
        ap.error("name at least two builds")
    for b in args.builds:
        if not b.is_file():
            ap.error(f"{b}: no such file")
    if args.threads > 1:
        cpu = -1
    elif args.cpu is not None:
        cpu = args.cpu
    else:
        cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else -1
    env = dict(os.environ, **({"HORQ_KERNEL": args.path} if args.path else {}))
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([sys.executable, "-c", EXPORT, str(Path(__file__).resolve().parent), tmp, str(args.batch),
                              ",".join(map(str, args.orders)), *args.models], capture_output=True, text=True)
        if res.returncode == 2:
            ap.error(res.stderr.strip().splitlines()[-1])
        if res.returncode != 0:
            raise SystemExit(f"exporting the models failed:\n{res.stderr}")
        jobs = [(key, order, Path(tmp) / key / f"o{order}.horq", Path(tmp) / key / "x.npy")
                for key in args.models for order in args.orders]
        runs: dict[tuple, list[float]] = {}  # (model, order, build index): each round's median
        path = ""
        for _ in range(args.rounds):
            for key, order, model_file, input_file in jobs:
                for i, build in enumerate(args.builds):
                    res = subprocess.run([sys.executable, "-c", CHILD, str(build), str(model_file), str(input_file),
                                          str(args.threads), str(args.calls), str(cpu)],
                                         capture_output=True, text=True, env=env)
                    if res.returncode != 0:
                        raise SystemExit(f"{build}: the run of {key} order {order} failed:\n{res.stderr}")
                    got = json.loads(res.stdout.strip().splitlines()[-1])
                    path = got["path"]
                    runs.setdefault((key, order, i), []).append(got["ms"])
    pinned = f"pinned to CPU {cpu}" if cpu >= 0 else "not pinned"
    print(f"whole models, {args.threads} thread(s) ({pinned}), batch {args.batch}, kernel path {path}, {args.rounds} "
          f"rounds of {args.calls} calls: ms per call, median over rounds of each round's median (range over rounds)")
    for key, order, _, _ in jobs:
        first = statistics.median(runs[(key, order, 0)])
        cells = []
        for i, build in enumerate(args.builds):
            vals = runs[(key, order, i)]
            med = statistics.median(vals)
            ratio = "" if i == 0 else f", {med / first:.3f}x"
            cells.append(f"{build.name} {med:.3f} ({min(vals):.3f}-{max(vals):.3f}{ratio})")
        print(f"  {key} order {order}: " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
