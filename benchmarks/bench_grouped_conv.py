"""Grouped and depthwise float convolutions (and 1x1 ones of one group, for the runtime's 1x1 rule) on the runtime
against PyTorch fp32, and the numpy backend's product (horq.runtime.ops.grouped_matmul: one batched matmul over the
groups of the im2col columns) against one matmul per group on the same columns (the form it replaced), 1 thread,
batch 1, medians of repeated calls after warm-up, ms.

Each layer is Conv2d(groups) -> BatchNorm2d -> ReLU exported to a .horq file and run by horq.runtime.load on the
backend named by --backend (native: the core's direct float convolution, kernels.float_conv2d(groups=), where
horq.runtime.native.float_conv_runs_natively takes the layer, else numpy's op; numpy: im2col and grouped_matmul). The
outputs are checked against PyTorch's (max |difference| in the last column).

    .venv/bin/python benchmarks/bench_grouped_conv.py [--repeats 50] [--backend native]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import horq
from horq.runtime import load, threads
from horq.runtime.ops import grouped_matmul, im2col32
from horq.timing import median_seconds

LAYERS = [  # (C_in, C_out, groups, size, stride, kernel): MobileNet-style depthwise layers, grouped 3x3 and 1x1 ones
    (32, 32, 32, 112, 1, 3),
    (144, 144, 144, 56, 2, 3),
    (256, 256, 256, 14, 1, 3),
    (512, 512, 512, 14, 1, 3),
    (960, 960, 960, 7, 1, 3),
    (672, 672, 672, 7, 1, 5),
    (64, 64, 8, 28, 1, 3),
    (128, 256, 4, 14, 1, 3),
    (64, 64, 8, 56, 1, 1),  # 1x1: 8, 32, 80 and 256 output channels a group
    (256, 256, 8, 28, 1, 1),
    (240, 240, 3, 28, 1, 1),
    (512, 512, 2, 14, 1, 1),
    (512, 512, 2, 7, 1, 1),
    (32, 64, 1, 56, 1, 1),  # 1x1 of one group over 32, 64 and 128 channels (native.FLOAT_CONV_1X1_MAX_FIELD)
    (64, 64, 1, 56, 1, 1),
    (128, 256, 1, 28, 1, 1),
]


def per_group_matmul(w, cols, groups):
    """One matmul per group: the form grouped_matmul replaced."""
    rows, per = w.shape[0] // groups, w.shape[1]
    out = np.empty((w.shape[0], cols.shape[1]), np.result_type(w, cols))
    for g in range(groups):
        np.matmul(w[g * rows : (g + 1) * rows], cols[g * per : (g + 1) * per], out=out[g * rows : (g + 1) * rows])
    return out


def layer_row(cin, cout, groups, size, stride, k, backend, repeats, tmp) -> str:
    """One layer's table row: exported, loaded, checked against PyTorch, timed."""
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups)
    model = nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU()).eval()
    path = Path(tmp) / "m.horq"
    horq.export(model, path, input_shape=(cin, size, size))
    runtime = load(path, backend=backend)
    x = np.random.default_rng(0).standard_normal((1, cin, size, size)).astype(np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        want = model(xt).numpy()
        t_torch = median_seconds(lambda: model(xt), repeats=repeats)
    diff = float(np.abs(runtime(x) - want).max())
    t_horq = median_seconds(lambda: runtime(x), repeats=repeats)
    w = conv.weight.detach().numpy().reshape(cout, -1)
    cols = im2col32(x, k, k, stride=(stride, stride), padding=(k // 2, k // 2), dilation=(1, 1))
    if not np.array_equal(per_group_matmul(w, cols, groups), grouped_matmul(w, cols, groups)):
        raise SystemExit("the batched matmul and the per-group loop differ")
    t_loop = median_seconds(lambda: per_group_matmul(w, cols, groups), repeats=repeats)
    t_batched = median_seconds(lambda: grouped_matmul(w, cols, groups), repeats=repeats)
    return (f"| {cin} -> {cout} | {groups} | {k}x{k} | {size} | {stride} | {t_horq * 1e3:.3f} | {t_torch * 1e3:.3f} | "
            f"{t_loop * 1e3:.3f} | {t_batched * 1e3:.3f} | {diff:.1e} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--backend", default="native", choices=["native", "numpy"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    threads.set_num_threads(1)
    torch.manual_seed(0)
    print(f"backend {args.backend}, 1 thread, batch 1, medians of {args.repeats} calls (ms)")
    print("| C_in -> C_out | groups | kernel | size | stride | horq | torch fp32 | matmul per group | batched | "
          "max diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for layer in LAYERS:
            print(layer_row(*layer, args.backend, args.repeats, tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
