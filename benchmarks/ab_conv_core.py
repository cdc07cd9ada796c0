"""Two or more builds of benchmarks/profile_conv_core.cpp (one per version of the C++ core, each compiled against its
own build's libhorq_core.a) run in turn on the same layer arguments, round after round, so that they are compared
under the same machine state (these VMs drift by 10% and more within minutes, at 2 threads far more): per build,
the median over the rounds of each run's median call and of its median input quantization, and the fastest call.

    g++ -O2 -std=c++17 -Icsrc benchmarks/profile_conv_core.cpp build/cp311-cp311-linux_x86_64/libhorq_core.a
        -pthread -o /tmp/pcc_new          (one line; the same at the older commit for /tmp/pcc_old)
    .venv/bin/python benchmarks/ab_conv_core.py /tmp/pcc_old /tmp/pcc_new --layer "512 4 1 0.3 1 0 3 avx512 0 1 0 512 1"
        [--threads 2] [--rounds 5]

--layer is profile_conv_core's argument list (channels, size, order, seconds, batch, train, kernel size, path, flush
MB, stride, nhwc, C_out, residual, rewrite); keep its seconds short (0.3), the rounds do the repeating.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess

_LINE = re.compile(r"fastest ([0-9.]+) ms, median ([0-9.]+) ms, of which input quantization (?:([0-9.]+)|inside)")


def run_once(binary: str, layer: list[str], threads: int) -> tuple[float, float, float]:
    """(median call, median input quantization, fastest call) in ms of one profile_conv_core run; the quantization is
    NaN where the build ran the input quantization inside the GEMM's job (more than one thread), not timed apart."""
    env = dict(os.environ, HORQ_NUM_THREADS=str(threads))
    out = subprocess.run([binary, *layer], env=env, capture_output=True, text=True, check=True).stdout
    m = _LINE.search(out)
    if m is None:
        raise SystemExit(f"{binary}: no timing line in its output:\n{out}")
    return float(m.group(2)), float(m.group(3) or "nan"), float(m.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binaries", nargs="+", help="profile_conv_core builds, in the order each round runs them")
    ap.add_argument("--layer", required=True, help="profile_conv_core's arguments, one string")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    layer = args.layer.split()
    runs: dict[str, list[tuple[float, float, float]]] = {b: [] for b in args.binaries}
    for _ in range(args.rounds):
        for b in args.binaries:
            runs[b].append(run_once(b, layer, args.threads))
    print(f"profile_conv_core {args.layer}, {args.threads} thread(s), {args.rounds} rounds (ms: median of the runs' "
          "medians; input quantization likewise; fastest call)")
    for b, rs in runs.items():
        timed = [r[1] for r in rs if not math.isnan(r[1])]
        quantization = f"{statistics.median(timed):.4f}" if timed else "-"
        print(f"  {b}: {statistics.median(r[0] for r in rs):.4f}  quantization {quantization}  "
              f"fastest {min(r[2] for r in rs):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
