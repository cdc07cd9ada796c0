"""The backward products of native training, layer by layer, against PyTorch's float kernels on the same shapes:
the input gradient (horq.kernels.train.conv_input_grad against PyTorch's own convolution backward,
aten.convolution_backward, asked for the input gradient) and the weight gradient (planes_weight_grad, one
float-by-sign product per plane, and the rebuilt-columns float GEMM of native_train._weight_grad, against the
same backward asked for the weight gradient), batch 64, 3x3 stride 1 padding 1, 1 thread,
contenders round-robin, medians in ms.

    .venv/bin/python benchmarks/bench_backward.py [--repeats 5] [--linear | --shortcuts]

Layers: cifar-vgg's five binary convolutions and mnist-cnn's two (their channels and sizes); with --linear instead
the binary linear layers of mnist-cnn (3136 -> 256) and mnist-mlp (512 -> 512), batch 64, against PyTorch's GEMMs
(the input gradient g @ W~ then the clip window; the weight gradient g^T x); with --shortcuts the weight
gradients of the zoo resnet18's three 1x1 stride-2 shortcut convolutions (one tap and one group per column, like a
linear layer; their input gradients take PyTorch's route, below 7 output columns or not).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from horq import kernels
from horq.kernels import train as ktrain
from horq.nn.native_train import _torch_input_grad, _weight_grad, expand_step

LINEAR_LAYERS = [("mnist-cnn", 3136, 256), ("mnist-mlp", 512, 512)]  # (model, n_in, n_out)
SHORTCUTS = [(64, 128, 32), (128, 256, 16), (256, 512, 8)]  # (C_in, C_out, input size): stride 2, batch 64
LAYERS = [  # (model, C_in, C_out, size)
    ("cifar-vgg", 128, 128, 32), ("cifar-vgg", 128, 256, 16), ("cifar-vgg", 256, 256, 16),
    ("cifar-vgg", 256, 512, 8), ("cifar-vgg", 512, 512, 8), ("mnist-cnn", 32, 64, 14), ("mnist-cnn", 64, 64, 7),
]


def _medians(fns: dict, repeats: int) -> dict:
    for f in fns.values():
        f()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _layer_row(model: str, c: int, o: int, s: int, rng, repeats: int) -> str:
    x = rng.standard_normal((64, c, s, s)).astype(np.float32)
    rows = rng.standard_normal((o, c * 9)).astype(np.float32)
    alpha, bits, w_eff = ktrain.binarize_weight_rows(rows)
    wt = torch.from_numpy(w_eff).reshape(o, c, 3, 3)
    wbits = ktrain.conv_weight_bits(bits, c, 3, 3)
    g = torch.from_numpy(rng.standard_normal((64, o, s, s)).astype(np.float32))
    g_rows = g.permute(0, 2, 3, 1).reshape(-1, o).contiguous()
    xt = torch.from_numpy(x)
    layout, n = ktrain.conv_layout(c, 9), c * 9
    fns = {
        "in": lambda: ktrain.conv_input_grad(g.numpy(), alpha, bits, x, 3, 3, (1, 1), (1, 1), (1, 1), 1.0),
        "in_torch": lambda: _torch_input_grad(g, xt, wt, (1, 1), (1, 1), (1, 1)),
        "w_torch": lambda: torch.ops.aten.convolution_backward(g, xt, wt, None, (1, 1), (1, 1), (1, 1), False, (0, 0),
                                                               1, (False, True, False))[1],
    }

    def products(cols):
        return lambda: ktrain.planes_weight_grad(g_rows.numpy(), *cols, layout, 9)

    def columns_gemm(cols):
        return lambda: _weight_grad(lambda c0, c1: g_rows[c0:c1].t(), *cols, layout, n, expand_step(n))

    for k in (1, 2, 3):
        _, cols = ktrain.conv2d_keep(x, wbits, alpha.astype(np.float64), np.zeros(o), 3, 3, (1, 1), (1, 1), (1, 1), k)
        fns[f"w{k}"], fns[f"e{k}"] = products(cols), columns_gemm(cols)
    m = _medians(fns, repeats)
    return (f"| {model} {c}->{o} {s}x{s} | {m['in']:.1f} | {m['in_torch']:.1f} | {m['in_torch'] / m['in']:.2f} | "
            f"{m['w1']:.1f} | {m['w2']:.1f} | {m['w3']:.1f} | {m['e1']:.1f} | {m['e2']:.1f} | {m['e3']:.1f} | "
            f"{m['w_torch']:.1f} | {m['w_torch'] / m['w1']:.2f} | {m['w_torch'] / m['w2']:.2f} |")


def _linear_row(model: str, n: int, o: int, rng, repeats: int) -> str:
    from horq.bits import words_for

    x = rng.standard_normal((64, n)).astype(np.float32)
    rows = rng.standard_normal((o, n)).astype(np.float32)
    alpha, bits, w_eff = ktrain.binarize_weight_rows(rows)
    g = torch.from_numpy(rng.standard_normal((64, o)).astype(np.float32))
    xt, wt = torch.from_numpy(x), torch.from_numpy(w_eff)
    layout = (1, n, words_for(n))
    fns = {
        "in": lambda: ktrain.linear_input_grad(g.numpy(), alpha, bits, x, 1.0),
        "in_torch": lambda: (g @ wt) * (xt.abs() <= 1.0),
        "w_torch": lambda: g.t() @ xt,
    }
    for k in (1, 2, 3):
        _, (cb, cbet) = ktrain.linear_keep(x, bits, alpha.astype(np.float64), np.zeros(o), k)
        fns[f"w{k}"] = (lambda cb=cb, cbet=cbet: ktrain.planes_weight_grad(g.numpy(), cb, cbet, layout, 1))
        fns[f"e{k}"] = (lambda cb=cb, cbet=cbet: _weight_grad(lambda c0, c1: g[c0:c1].t(), cb, cbet, layout, n,
                                                               expand_step(n)))
    m = _medians(fns, repeats)
    return (f"| {model} {n}->{o} | {m['in']:.2f} | {m['in_torch']:.2f} | {m['in_torch'] / m['in']:.2f} | "
            f"{m['w1']:.2f} | {m['w2']:.2f} | {m['w3']:.2f} | {m['e1']:.2f} | {m['e2']:.2f} | {m['e3']:.2f} | "
            f"{m['w_torch']:.2f} | {m['w_torch'] / m['w1']:.2f} | {m['w_torch'] / m['w2']:.2f} |")


def _shortcut_row(c: int, o: int, s: int, rng, repeats: int) -> str:
    x = rng.standard_normal((64, c, s, s)).astype(np.float32)
    rows = rng.standard_normal((o, c)).astype(np.float32)
    alpha, bits, w_eff = ktrain.binarize_weight_rows(rows)
    wbits = ktrain.conv_weight_bits(bits, c, 1, 1)
    g = torch.from_numpy(rng.standard_normal((64, o, s // 2, s // 2)).astype(np.float32))
    g_rows = g.permute(0, 2, 3, 1).reshape(-1, o).contiguous()
    xt, wt = torch.from_numpy(x), torch.from_numpy(w_eff).reshape(o, c, 1, 1)
    layout = ktrain.conv_layout(c, 1)
    fns = {"w_torch": lambda: torch.ops.aten.convolution_backward(g, xt, wt, None, (2, 2), (0, 0), (1, 1), False,
                                                                  (0, 0), 1, (False, True, False))[1]}
    for k in (1, 2):
        _, (cb, cbet) = ktrain.conv2d_keep(x, wbits, alpha.astype(np.float64), np.zeros(o), 1, 1, (2, 2), (0, 0),
                                           (1, 1), k)
        fns[f"w{k}"] = (lambda cb=cb, cbet=cbet: ktrain.planes_weight_grad(g_rows.numpy(), cb, cbet, layout, 1))
        fns[f"e{k}"] = (lambda cb=cb, cbet=cbet: _weight_grad(lambda c0, c1: g_rows[c0:c1].t(), cb, cbet, layout, c,
                                                               expand_step(c)))
    m = _medians(fns, repeats)
    return (f"| resnet18 shortcut {c}->{o} {s}x{s} /2 | {m['w1']:.2f} | {m['w2']:.2f} | {m['e1']:.2f} | "
            f"{m['e2']:.2f} | {m['w_torch']:.2f} | {m['w_torch'] / m['w1']:.2f} | {m['w_torch'] / m['w2']:.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--linear", action="store_true", help="the linear layers instead of the convolutions")
    ap.add_argument("--shortcuts", action="store_true", help="resnet18's 1x1 stride-2 shortcuts' weight gradients")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kernels.set_num_threads(1)
    rng = np.random.default_rng(0)
    if args.shortcuts:
        print("| layer | weight grad K=1 | K=2 | columns+GEMM K=1 | K=2 | torch | torch / K=1 | torch / K=2 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for layer in SHORTCUTS:
            print(_shortcut_row(*layer, rng, args.repeats))
    else:
        print("| layer | input grad: horq | torch | ratio | weight grad K=1 | K=2 | K=3 | columns+GEMM K=1 | K=2 | K=3 "
              "| torch | torch / K=1 | torch / K=2 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for layer in LINEAR_LAYERS if args.linear else LAYERS:
            print(_linear_row(*layer, rng, args.repeats) if args.linear else _layer_row(*layer, rng, args.repeats))
    print(f"\n{kernels.info()['cpu']}, kernel path {kernels.info()['in_use']}, 1 thread, batch 64, medians of "
          f"{args.repeats} round-robin runs (ms).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
