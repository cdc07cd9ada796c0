"""Runs one HORQ convolution in a loop, for a profiler (1 thread unless --threads, the best kernel path).

    perf record -g -o /tmp/perf.data .venv/bin/python benchmarks/profile_conv.py --channels 128 --size 32 --order 2
    perf report -i /tmp/perf.data --no-children --sort symbol
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from horq import kernels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=128, help="input = output channels")
    ap.add_argument("--size", type=int, default=32, help="input height = width")
    ap.add_argument("--order", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    kernels.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    c, s = args.channels, args.size
    x = rng.standard_normal((1, c, s, s)).astype(np.float32)
    layer = kernels.Conv2dLayer(kernels.pack_weights(rng.standard_normal((c, c, 3, 3)).astype(np.float32)),
                                order=args.order, padding=1)
    calls, fastest, start = 0, float("inf"), time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        t0 = time.perf_counter()
        layer(x)
        fastest = min(fastest, time.perf_counter() - t0)
        calls += 1
    print(f"{calls} calls, {1e3 * (time.perf_counter() - start) / calls:.3f} ms each, fastest {1e3 * fastest:.3f} ms "
          f"({layer.kernel}, {args.threads} thread(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
