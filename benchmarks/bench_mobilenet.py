"""A MobileNetV2 (224x224, ReLU6 after its convolutions, depthwise 3x3 layers, inverted residuals) on the runtime:
float, and with its ungrouped convolutions converted to HORQ layers (order 1 and 2; the depthwise ones stay float,
as binary convolutions take one group), against PyTorch fp32, 1 thread, batch 1, medians of repeated calls after
warm-up, ms; the runtime with its hardtanh (ReLU6) steps fused into the float and binary layers before them (the
default plan, horq.runtime.fuse) and with them left as separate steps (the same plan without that rewrite), timed in
turn in the same process, the hardtanh steps' share of the unfused model's per-node profile and the float
convolutions' share of the fused one's (the depthwise layers, which binary convolutions do not take, and the stem).

The architecture is written here (torchvision's do not import beside the CPU torch): stem conv 3x3 stride 2 to 32
channels, the 17 inverted-residual blocks of MobileNetV2 (expansion 6; 16, 24, 32, 64, 96, 160, 320 channels), a 1x1
conv to 1280, global average pooling and a 1000-way classifier; BatchNorm statistics randomized so no affine is an
identity. Outputs are checked: the fused and unfused plans bit for bit, the float model against PyTorch's.

    .venv/bin/python benchmarks/bench_mobilenet.py [--repeats 20] [--rounds 3] [--size 224]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import horq
from horq.nn import HORQConfig, convert_
from horq.runtime import fuse, load, threads
from horq.timing import median_seconds

BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    """1x1 expansion (none at t = 1), depthwise 3x3 (stride s), 1x1 projection; x + body(x) where shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet_v2(num_classes: int = 1000) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
    c = 32
    for t, cout, n, s in BLOCKS:
        for i in range(n):
            layers.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
            c = cout
    layers += [nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
               nn.Flatten(), nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


def _randomized_bn_(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def variant(order: int | None) -> nn.Module:
    torch.manual_seed(0)
    model = mobilenet_v2()
    if order is not None:  # every ungrouped conv and linear layer but the first and last (keep_first_last_fp)
        convert_(model, HORQConfig(order=order),
                 filter_fn=lambda name, m: not (isinstance(m, nn.Conv2d) and m.groups != 1))
    return _randomized_bn_(model, 1)


def row(order, size, repeats, rounds, tmp) -> str:
    model = variant(order)
    path = Path(tmp) / "m.horq"
    horq.export(model, path, input_shape=(3, size, size))
    fused = load(path, backend="native")
    clamp_bounds = fuse._clamp_bounds
    fuse._clamp_bounds = lambda node: None  # the plan without the hardtanh rewrite
    try:
        unfused = load(path, backend="native")
    finally:
        fuse._clamp_bounds = clamp_bounds
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    if not np.array_equal(fused(x).view(np.uint32), unfused(x).view(np.uint32)):
        raise SystemExit("the fused and unfused plans differ")
    fp32 = variant(None) if order is not None else model
    xt = torch.from_numpy(x)
    diff = ""
    with torch.no_grad():
        if order is None:
            diff = f"{float(np.abs(fused(x) - model(xt).numpy()).max()):.1e}"
        times = {"fused": [], "unfused": [], "torch": []}
        for _ in range(rounds):  # alternated: the machine's drift falls on all three alike
            times["fused"].append(median_seconds(lambda: fused(x), repeats=repeats))
            times["unfused"].append(median_seconds(lambda: unfused(x), repeats=repeats))
            times["torch"].append(median_seconds(lambda: fp32(xt), repeats=repeats))
    t = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    prof = unfused.profile(x, repeats=repeats)
    share = prof.by_op.get("hardtanh", {"ms": 0.0})["ms"] / prof.call_ms
    fused_prof = fused.profile(x, repeats=repeats)
    float_share = fused_prof.by_op.get("conv2d", {"ms": 0.0})["ms"] / fused_prof.call_ms
    steps = sum(s.op == "hardtanh" for s in fused._steps), sum(s.op == "hardtanh" for s in unfused._steps)
    name = "float" if order is None else f"order {order}"
    return (f"| {name} | {t['fused']:.2f} | {t['unfused']:.2f} | {t['torch']:.2f} | {t['torch'] / t['fused']:.2f}x "
            f"| {steps[0]} / {steps[1]} | {share:.0%} | {float_share:.0%} | {diff or '-'} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    threads.set_num_threads(1)
    info = horq.kernels.info()
    print(f"{info['cpu']}, kernel path {info['in_use']}, 1 thread, batch 1, "
          f"{args.size}x{args.size}; medians of {args.rounds} alternated rounds of {args.repeats}-call medians (ms)")
    print("| MobileNetV2 | horq (clamp fused) | horq (hardtanh steps) | torch fp32 | torch / horq | hardtanh steps "
          "(fused / not) | hardtanh share unfused | float conv share fused | max diff vs torch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for order in (None, 1, 2):
            print(row(order, args.size, args.repeats, args.rounds, tmp), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
