"""Two builds of the native extension compared on `horq.kernels.bgemm` (the row kernel behind the binary GEMM
benchmark, `horq bench kernels`): the shapes of that benchmark, 1 thread, on the best kernel path (or --path), each
build in a process of its own per round, pinned to one CPU (--cpu; unpinned, a process that the system moved between
this VM's two vCPUs ran up to 25% slower than the next), the builds alternated round by round so that they see the
same machine state; per build and shape the median over rounds of each round's median call, in G binary MAC/s.

    .venv/bin/python benchmarks/ab_bgemm.py A.so B.so [--rounds 5] [--calls 100] [--path avx512] [--cpu 0]

A.so / B.so: copies of the extension (build/<wheel tag>/_core.*.so) made before and after a change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# Run in each child: the named build imported as horq._core before horq.kernels, then every shape timed.
CHILD = r"""
import importlib.util, json, os, sys, time
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {int(sys.argv[4])})
import numpy as np
spec = importlib.util.spec_from_file_location("horq._core", sys.argv[1])
core = importlib.util.module_from_spec(spec)
sys.modules["horq._core"] = core
spec.loader.exec_module(core)
from horq import kernels
from horq.apps.bench_kernels import BGEMM_SIZES
kernels.set_num_threads(1)
path = sys.argv[3] or kernels.info()["available"][0]
rng = np.random.default_rng(0)
out = {}
for m, k, n in BGEMM_SIZES:
    a = rng.integers(0, 2**63, (m, k // 64), dtype=np.uint64)
    b = rng.integers(0, 2**63, (n, k // 64), dtype=np.uint64)
    kernels.bgemm(a, b, k, kernel=path)
    ts = []
    for _ in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        kernels.bgemm(a, b, k, kernel=path)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    out[f"{m}x{k}x{n}"] = m * k * n / ts[len(ts) // 2] / 1e9
print(json.dumps({"path": path, "gmacs": out}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs=2, type=Path, help="the two extension files")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100, help="timed calls per shape and round")
    ap.add_argument("--path", default="", help="kernel path (default: the best this CPU has)")
    ap.add_argument("--cpu", type=int, default=None, help="the CPU the runs are pinned to (default: the first allowed)")
    args = ap.parse_args(argv)
    for b in args.builds:
        if not b.is_file():
            ap.error(f"{b}: no such file")
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    runs: dict[Path, list[dict]] = {b: [] for b in args.builds}
    path = ""
    for _ in range(args.rounds):
        for build in args.builds:
            res = subprocess.run([sys.executable, "-c", CHILD, str(build), str(args.calls), args.path, str(cpu)],
                                 capture_output=True, text=True, check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            path = got["path"]
            runs[build].append(got["gmacs"])
    print(f"bgemm, 1 thread on CPU {cpu}, kernel path {path}, {args.rounds} rounds of {args.calls} calls: "
          "G binary MAC/s, median over rounds of each round's median (range over rounds)")
    for shape in runs[args.builds[0]][0]:
        cells = []
        for build in args.builds:
            vals = [r[shape] for r in runs[build]]
            cells.append(f"{build.name} {statistics.median(vals):.0f} ({min(vals):.0f}-{max(vals):.0f})")
        print(f"  {shape}: " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
