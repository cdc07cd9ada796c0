"""Float convolutions on the native backend: horq.kernels.float_conv2d (csrc/core/float_conv.h) on each kernel path
against what the numpy backend does (ops.im2col32, one BLAS GEMM, the bias added), batch 1, 1 thread, timed
round-robin in one process; the shapes decide horq.runtime.native's rule (FLOAT_CONV_PATHS: avx2 and avx512,
FLOAT_CONV_MAX_FIELD: receptive fields C*kh*kw up to 576 values, FLOAT_CONV_1X1_MAX_FIELD: 1x1 kernels over up to
32 channels, FLOAT_CONV_MIN_WIDTH: output rows at least 16 wide).

    .venv/bin/python benchmarks/bench_float_conv.py [--seconds 0.5] [--doc docs/KERNELS.md]
    .venv/bin/python benchmarks/bench_float_conv.py --winograd [--seconds 0.5]

With ``--winograd``: the core's two algorithms (``float_conv2d(algorithm="direct" | "winograd")``, each x86 path
this CPU runs) on ResNet stems of several input sizes with their 3x3 stride-2 pool, and a 3x3 stride-1 stem: the
measurements behind float_conv_winograd_pays (docs/KERNELS.md round 15).

Shapes: the first layers of the zoo's networks (ResNet-18's 7x7 stride-2 stem at 224 and its 3x3 stem at 32,
cifar-vgg's 3->128, mnist-cnn's 1->32), a batch of 32 stems, and float layers past the rule's bounds (wider
fields, rows narrower than a vector, 1x1 kernels over 32, 64, 128 and 256 channels).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import numpy as np
import threadpoolctl

from horq import kernels, reference
from horq.apps.bench_kernels import cpu_flags
from horq.fileio import check_marked_section, replace_marked_section
from horq.runtime import native
from horq.runtime.ops import im2col32
from horq.timing import interleaved_times

COMMAND = ".venv/bin/python benchmarks/bench_float_conv.py"
DOC_SECTION = "float-conv"
# (label, N, C, H (= W), C_out, k, stride, padding)
SHAPES = [
    ("ResNet-18 stem, 224", 1, 3, 224, 64, 7, 2, 3),
    ("ResNet-18 stem, 32", 1, 3, 32, 64, 3, 1, 1),
    ("cifar-vgg first layer", 1, 3, 32, 128, 3, 1, 1),
    ("mnist-cnn first layer", 1, 1, 28, 32, 3, 1, 1),
    ("ResNet-18 stem, 32, batch 32", 32, 3, 32, 64, 3, 1, 1),
    ("16 -> 32, 32x32", 1, 16, 32, 32, 3, 1, 1),
    ("32 -> 32, 32x32", 1, 32, 32, 32, 3, 1, 1),
    ("64 -> 64, 56x56", 1, 64, 56, 64, 3, 1, 1),
    ("128 -> 128, 28x28", 1, 128, 28, 128, 3, 1, 1),
    ("1x1 256 -> 512, 14x14", 1, 256, 14, 512, 1, 1, 0),
    ("1x1 32 -> 64, 56x56", 1, 32, 56, 64, 1, 1, 0),
    ("1x1 64 -> 64, 56x56", 1, 64, 56, 64, 1, 1, 0),
    ("1x1 128 -> 256, 28x28", 1, 128, 28, 256, 1, 1, 0),
]


def run(seconds: float) -> list[dict]:
    kernels.set_num_threads(1)
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    paths = [p for p in ("generic", "avx2", "avx512") if p in kernels.info()["available"]]
    rows = []
    rng = np.random.default_rng(0)
    for label, n, c, h, m, k, s, p in SHAPES:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((m, c, k, k)).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        matrix = w.reshape(m, -1)
        geometry = {"stride": (s, s), "padding": (p, p), "dilation": (1, 1)}

        def numpy_path(x=x, matrix=matrix, b=b, k=k, geometry=geometry):
            y = matrix @ im2col32(x, k, k, **geometry)
            y += b[:, None]
            return y

        fns = {"numpy": numpy_path}
        for path in paths:
            fns[path] = (lambda x=x, w=w, b=b, s=s, p=p, path=path:
                         kernels.float_conv2d(x, w, stride=s, padding=p, bias=b, kernel=path))
        times = interleaved_times(fns, min_reps=5, min_seconds=seconds)
        ow = (h + 2 * p - k) // s + 1
        rows.append({"shape": label, "field": c * k * k, "out_w": ow,
                     "native": native.float_conv_in_core((m, c, k, k), 1, ow),
                     "ms": {name: med * 1e3 for name, (med, _) in times.items()}})
    return rows


# (label, C, H (= W), C_out, k, stride, padding, pooled): for --winograd.
WINOGRAD_SHAPES = [
    ("7x7 stride 2 + pool, 224x224", 3, 224, 64, 7, 2, 3, True),
    ("7x7 stride 2 + pool, 112x112", 3, 112, 64, 7, 2, 3, True),
    ("7x7 stride 2 + pool, 64x64", 3, 64, 64, 7, 2, 3, True),
    ("7x7 stride 2 + pool, 32x32", 3, 32, 64, 7, 2, 3, True),
    ("3x3 stride 1, 32x32", 3, 32, 64, 3, 1, 1, False),
]


def _relative_error(got, x, w, b, stride, padding) -> float:
    """The largest |got - exact| over sum |w x| + |exact| at that output, exact: the float64 reference's
    convolution + b, then the ReLU floor of 0 (what winograd_table computes)."""
    args = dict(order=None, stride=stride, padding=padding, dilation=1)
    exact = np.maximum(reference.horq_conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                             **args), 0.0)
    scale = reference.horq_conv2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), **args)
    return float((np.abs(got - exact) / (scale + np.abs(exact))).max())


def winograd_table(seconds: float) -> str:
    """The direct and Winograd algorithms side by side (medians and fastest calls of round-robin runs, ms), and
    each one's largest error against the float64 reference, relative to sum |w x| (the unpooled call)."""
    kernels.set_num_threads(1)
    paths = [p for p in ("avx2", "avx512") if p in kernels.info()["available"]]
    rng = np.random.default_rng(0)
    lines = [f"`{COMMAND} --winograd` ({kernels.info()['cpu']}, 1 thread, batch 1; round-robin medians / fastest, "
             "ms; error: the largest |y - exact| / sum |w x| of the unpooled convolution against float64):", "",
             "| shape | out width | path | direct | winograd | direct / winograd | error direct | error winograd |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, c, h, m, k, s, p, pooled in WINOGRAD_SHAPES:
        x = rng.standard_normal((1, c, h, h)).astype(np.float32)
        w = rng.standard_normal((m, c, k, k)).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        pool = {"kernel_size": 3, "stride": 2, "padding": 1} if pooled else None
        for path in paths:
            convs = {a: kernels.FloatConv2d(w, stride=s, padding=p, bias=b, floor=0.0, pool=pool, kernel=path,
                                            algorithm=a) for a in ("direct", "winograd")}
            fns = {a: (lambda conv=conv, x=x: conv(x)) for a, conv in convs.items()}
            t = {a: (med * 1e3, fast * 1e3) for a, (med, fast) in
                 interleaved_times(fns, min_reps=5, min_seconds=seconds).items()}
            (dm, df), (wm, wf) = t["direct"], t["winograd"]
            err = {a: _relative_error(kernels.float_conv2d(x, w, stride=s, padding=p, bias=b, floor=0.0,
                                                           kernel=path, algorithm=a), x, w, b, s, p)
                   for a in ("direct", "winograd")}
            lines.append(f"| {label} | {(h + 2 * p - k) // s + 1} | {path} | {dm:.3f} / {df:.3f} | "
                         f"{wm:.3f} / {wf:.3f} | {dm / wm:.2f} | {err['direct']:.1e} | {err['winograd']:.1e} |")
    return "\n".join(lines)


def markdown(rows, paths) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"`{COMMAND}` ({date}, {kernels.info()['cpu']}, {cpu_flags()}, 1 thread, batch 1 unless said, "
             f"load average {load:.1f}; medians of round-robin runs, ms):", "",
             "| shape | C*kh*kw | out width | in the core (avx2, avx512) | numpy im2col + BLAS | "
             + " | ".join(f"core, {p}" for p in paths) + " | " + " | ".join(f"numpy / {p}" for p in paths) + " |",
             "| --- | ---: | ---: | --- | ---: | " + " | ".join("---:" for _ in paths * 2) + " |"]
    for r in rows:
        t = r["ms"]
        lines.append(f"| {r['shape']} | {r['field']} | {r['out_w']} | {'yes' if r['native'] else 'no'} | "
                     f"{t['numpy']:.3f} | " + " | ".join(f"{t[p]:.3f}" for p in paths) + " | "
                     + " | ".join(f"{t['numpy'] / t[p]:.2f}" for p in paths) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="minimum timed seconds per contender and shape")
    ap.add_argument("--doc", type=Path, help="markdown file whose float-conv section gets the table")
    ap.add_argument("--winograd", action="store_true", help="the direct and Winograd algorithms side by side")
    args = ap.parse_args(argv)
    if args.winograd:
        print(winograd_table(args.seconds))
        return 0
    if args.doc:
        check_marked_section(args.doc, DOC_SECTION)
    paths = [p for p in ("generic", "avx2", "avx512") if p in kernels.info()["available"]]
    rows = run(args.seconds)
    text = markdown(rows, paths)
    print(text)
    if args.doc:
        replace_marked_section(args.doc, DOC_SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
