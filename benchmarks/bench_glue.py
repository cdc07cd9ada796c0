"""The glue of whole binary networks on the native core, call by call: max pooling (kernels.max_pool2d) on the
pools of cifar-vgg, ResNet-18 and a mnist-cnn training batch, ResNet-18's float stem with its pool (two calls, and
one: kernels.float_conv2d(pool=)), global average pooling (numpy's op and kernels.global_avg_pool), and
ResNet-18's 1x1 stride-2 shortcut convolutions with their BatchNorm affine and residual add fused
(kernels.Conv2dLayer), 1 thread, medians of repeated calls after warm-up, ms (Python call included), on the
kernel path in use (HORQ_KERNEL picks another).

    .venv/bin/python benchmarks/bench_glue.py [--repeats 300]
"""

from __future__ import annotations

import argparse

import numpy as np

from horq import kernels
from horq.timing import median_seconds

POOLS = [  # (label, shape, kernel, stride, padding, floor per channel)
    ("cifar-vgg pool 1", (1, 128, 32, 32), 2, 2, 0, False),
    ("cifar-vgg pool 2", (1, 256, 16, 16), 2, 2, 0, False),
    ("cifar-vgg pool 3", (1, 512, 8, 8), 2, 2, 0, False),
    ("ResNet-18 224 stem pool (+ReLU)", (1, 64, 112, 112), 3, 2, 1, True),
    ("mnist-cnn pool, batch 64", (64, 64, 14, 14), 2, 2, 0, False),
]
SHORTCUTS = [(64, 128, 56), (128, 256, 28), (256, 512, 14)]  # (C_in, C_out, input size) of ResNet-18 224x224


def _median_ms(fn, repeats: int) -> float:
    return 1e3 * median_seconds(fn, repeats=repeats, warmup=10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args(argv)
    kernels.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"kernel path {kernels.info()['in_use']}, {kernels.info()['cpu']}, 1 thread")
    print("| call | shape | ms |")
    print("| --- | --- | ---: |")
    for label, shape, k, s, p, floor in POOLS:
        x = rng.standard_normal(shape).astype(np.float32)
        fl = np.zeros(shape[1], np.float32) if floor else None
        ms = _median_ms(lambda: kernels.max_pool2d(x, k, s, p, floor=fl), args.repeats)  # noqa: B023
        print(f"| max_pool2d {label} | {'x'.join(map(str, shape))} | {ms:.3f} |")
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    w = rng.standard_normal((64, 3, 7, 7)).astype(np.float32)
    bias, zero = rng.standard_normal(64).astype(np.float32), np.zeros(64, np.float32)
    stem = {"stride": 2, "padding": 3, "bias": bias}
    calls = {
        "two calls": lambda: kernels.max_pool2d(kernels.float_conv2d(x, w, **stem), 3, 2, 1, floor=zero),
        "one call": lambda: kernels.float_conv2d(x, w, **stem, pool={"kernel_size": 3, "stride": 2, "padding": 1,
                                                                     "floor": zero}),
    }
    for label, fn in calls.items():
        ms = _median_ms(fn, max(20, args.repeats // 10))
        print(f"| ResNet-18 224 stem conv 7x7/2 + ReLU + max_pool2d 3x3/2, {label} | 1x3x224x224 | {ms:.3f} |")
    from horq.runtime import ops  # the numpy op the native backend replaces

    x = rng.standard_normal((1, 512, 4, 4)).astype(np.float32)
    for label, fn in (("numpy", lambda: ops.global_avg_pool(None, None, x)),
                      ("kernels", lambda: kernels.global_avg_pool(x))):
        ms = _median_ms(fn, args.repeats)
        print(f"| global_avg_pool ResNet-18 32x32, {label} | 1x512x4x4 | {ms:.4f} |")
    for c, m, h in SHORTCUTS:
        x = rng.standard_normal((1, c, h, h)).astype(np.float32)
        pw = kernels.pack_weights(rng.standard_normal((m, c, 1, 1)).astype(np.float32))
        layer = kernels.Conv2dLayer(pw, order=1, stride=2, in_scale=rng.uniform(0.5, 2, c).astype(np.float32),
                                    in_shift=rng.standard_normal(c).astype(np.float32))
        r = rng.standard_normal((1, m, h // 2, h // 2)).astype(np.float32)
        ms = _median_ms(lambda: layer(x, r), args.repeats)  # noqa: B023
        print(f"| 1x1 stride-2 conv + affine + residual, order 1 | {c}->{m} at {h}x{h} | {ms:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
