"""What a call costs around the core: the prepared layers of horq.kernels (the runtime's steps) against the one-shot
functions and the raw core call, on inputs so small that the arithmetic is a few hundred nanoseconds (8 channels,
2x2 maps, batch 1), 1 thread, medians of 20,000 calls in microseconds.

    .venv/bin/python benchmarks/call_overhead.py
"""

from __future__ import annotations

import numpy as np

from horq import _core, kernels
from horq.timing import median_seconds


def median_us(fn, n: int = 20000) -> float:
    return median_seconds(fn, repeats=n, warmup=200) * 1e6


def main() -> int:
    kernels.set_num_threads(1)
    rng = np.random.default_rng(0)
    c, s = 8, 2
    pw = kernels.pack_weights(rng.standard_normal((c, c, 3, 3)).astype(np.float32))
    x = rng.standard_normal((1, c, s, s)).astype(np.float32)
    r = rng.standard_normal((1, c, s, s)).astype(np.float32)
    one = np.ones(c, np.float32)
    layer = kernels.Conv2dLayer(pw, order=1, padding=1, in_scale=one, in_shift=one, out_floor=one)
    raw = (pw.conv_bits(), layer._coef, layer._add, 3, 3, (1, 1), (1, 1), (1, 1), 1, layer.kernel, one, one, r, one)
    w4 = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    xl = rng.standard_normal((1, c, 8, 8)).astype(np.float32)
    fconv, pool = kernels.FloatConv2d(w4, padding=1, bias=one), kernels.MaxPool2d(2, floor=one)
    rows = [
        ("Conv2dLayer(x, residual), in-affine and floor", median_us(lambda: layer(x, r))),
        ("_core.conv2d, the same arguments", median_us(lambda: _core.conv2d(x, *raw))),
        ("kernels.conv2d (one-shot)", median_us(lambda: kernels.conv2d(x, pw, order=1, padding=1))),
        ("FloatConv2d(x), 8x8 map", median_us(lambda: fconv(xl))),
        ("kernels.float_conv2d (one-shot)", median_us(lambda: kernels.float_conv2d(xl, w4, padding=1, bias=one))),
        ("MaxPool2d(x), 8x8 map", median_us(lambda: pool(xl))),
        ("kernels.max_pool2d (one-shot)", median_us(lambda: kernels.max_pool2d(xl, 2, floor=one))),
    ]
    print(f"call overhead, kernel path {kernels.info()['in_use']}, 1 thread, medians of 20,000 calls")
    print("| call | us |\n| --- | ---: |")
    for name, us in rows:
        print(f"| {name} | {us:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
