"""The yardstick layer suite: HORQ convolutions at orders 1-3 against PyTorch fp32 / int8 and, when the
optional `openvino` package is installed (`pip install ".[bench]"`), OpenVINO fp32 convolution and OpenVINO's
binary convolution (opset1 binary_convolution, xnor-popcount), on the same shapes, in one process.

    .venv/bin/python benchmarks/bench_yardstick.py [--threads 1] [--json docs/yardstick.json] [--doc docs/KERNELS.md]

Rows: daBNN's ResNet-18 layer suite (3x3, stride 1, C_in = C_out: 64ch 56x56, 128ch 28x28, 256ch 14x14, 512ch
7x7, 115.6 M binary MACs each), a 1x1 conv (256ch 28x28) and a stride-2 3x3 conv (256ch 14x14), batch 1.
Each row's contenders are timed round-robin (horq.timing.interleaved_times), so they share the machine's load;
twice: cold (one call of each per round, so each call finds the caches holding the other contenders' data) and
warm (rounds of WARM_BLOCK calls of each, the first of each not counted: a layer called in a loop, or inside a
network where its input comes from the layer before). The tables keep cold medians and fastest runs and warm
medians. OpenVINO's binary conv takes a {0, 1} float input (it binarizes it
itself) and u1 weights; its output is not compared (its arithmetic differs), only its time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

from horq import kernels
from horq.apps.bench_kernels import cpu_flags, int8_conv, torch_setup
from horq.fileio import check_marked_section, replace_marked_section
from horq.timing import interleaved_times

ROOT = Path(__file__).resolve().parents[1]
# name: (channels, size, kernel, stride)
SHAPES = {
    "r18-64ch-56": (64, 56, 3, 1),
    "r18-128ch-28": (128, 28, 3, 1),
    "r18-256ch-14": (256, 14, 3, 1),
    "r18-512ch-7": (512, 7, 3, 1),
    "1x1-256ch-28": (256, 28, 1, 1),
    "s2-256ch-14": (256, 14, 3, 2),
}
ORDERS = (1, 2, 3)
WARM_BLOCK = 4  # warm timing: rounds of 4 calls per contender, the first of each not counted
# The tables both yardstick scripts print (this one and bench_yardstick_models.py): (title, statistic, the rows' key
# of the timing: "times" cold, "warm").
TABLES = (("Medians, cold", "median", "times"), ("Fastest runs, cold (least disturbed by other jobs)", "best", "times"),
          (f"Medians, warm (rounds of {WARM_BLOCK} calls per contender, the first of each not counted)", "median",
           "warm"))
DOC_SECTION = "yardstick"  # the generated part of --doc: <!-- yardstick:begin --> ... <!-- yardstick:end -->


def openvino_setup(threads: int):
    """(compile_fp32, compile_binary) building one-op OpenVINO models, or None when openvino is missing."""
    try:
        import openvino as ov
        import openvino.opset1 as ops
    except ImportError:
        return None
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}

    def fp32(x, w, k, s):
        inp = ops.parameter(list(x.shape), ov.Type.f32)
        y = ops.convolution(inp, ops.constant(w), [s, s], [k // 2] * 2, [k // 2] * 2, [1, 1])
        # f32 said explicitly: left to itself OpenVINO runs bfloat16 on CPUs with AMX/AVX512_BF16
        req = core.compile_model(ov.Model([y], [inp]), "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"}
                                 ).create_infer_request()
        return lambda: req.infer([x])

    def binary(x, w, k, s):
        inp = ops.parameter(list(x.shape), ov.Type.f32)
        # u1 weights: bit = 1 for +1 (OpenVINO's convention); the pattern does not change the time.
        packed = np.packbits((w.reshape(-1) >= 0).astype(np.uint8), bitorder="little")
        wt = ov.Tensor(ov.Type.u1, ov.Shape(list(w.shape)))
        np.copyto(np.asarray(wt.data).reshape(-1)[: packed.size], packed.view(np.asarray(wt.data).dtype))
        y = ops.binary_convolution(inp, ov.op.Constant(wt), [s, s], [k // 2] * 2, [k // 2] * 2, [1, 1],
                                   "xnor-popcount", 0.0)
        req = core.compile_model(ov.Model([y], [inp]), "CPU", config).create_infer_request()
        xb = (x > 0).astype(np.float32)
        return lambda: req.infer([xb])

    return {"version": ov.get_version(), "fp32": fp32, "binary": binary}


def run(threads: int, min_seconds: float) -> dict:
    torch, int8_note = torch_setup()
    kernels.set_num_threads(threads)
    ov = openvino_setup(threads)
    rng = np.random.default_rng(1)
    rows = []
    for name, (c, hw, k, s) in SHAPES.items():
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((c, c, k, k)) * 0.05).astype(np.float32)
        pw = kernels.pack_weights(w)
        layers = {o: kernels.Conv2dLayer(pw, order=o, stride=s, padding=k // 2) for o in ORDERS}
        fns = {f"horq{o}": partial(layers[o], x) for o in ORDERS}
        if torch is not None:
            torch.set_num_threads(threads)
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            cx, cw = (t.contiguous(memory_format=torch.channels_last) for t in (tx, tw))
            fns["torch_nchw"] = partial(torch.nn.functional.conv2d, tx, tw, stride=s, padding=k // 2)
            fns["torch_cl"] = partial(torch.nn.functional.conv2d, cx, cw, stride=s, padding=k // 2)
            if int8_note is None and s == 1 and k == 3:
                fns["torch_int8"] = int8_conv(torch, tx, tw)
        if ov is not None:
            fns["ov_fp32"], fns["ov_binary"] = ov["fp32"](x, w, k, s), ov["binary"](x, w, k, s)
        with torch.no_grad() if torch is not None else contextlib.nullcontext():
            cold = interleaved_times(fns, min_reps=20, min_seconds=min_seconds)
            warm = interleaved_times(fns, min_reps=5, min_seconds=min_seconds / 2, block=WARM_BLOCK)
        oh = (hw + 2 * (k // 2) - k) // s + 1
        row = {"shape": name, "C": c, "HW": hw, "k": k, "stride": s, "macs": c * c * k * k * oh * oh}
        for timing, res in (("times", cold), ("warm", warm)):
            times = {key: {"median": med, "best": best} for key, (med, best) in res.items()}
            if "torch_nchw" in times:
                nchw, cl = times.pop("torch_nchw"), times.pop("torch_cl")
                times["torch_fp32"] = nchw if nchw["median"] <= cl["median"] else cl
            row[timing] = times
            print(f"{name} {'cold' if timing == 'times' else 'warm'}: "
                  + ", ".join(f"{key}={v['median'] * 1e3:.3f}ms" for key, v in times.items()), flush=True)
        rows.append(row)
    info = kernels.info()
    return {"date": datetime.date.today().isoformat(), "cpu": info["cpu"], "cpu_flags": cpu_flags(),
            "kernel_path": info["in_use"], "threads": threads, "torch": getattr(torch, "__version__", None),
            "int8_note": int8_note, "openvino": ov["version"] if ov else None, "rows": rows}


def _ms(row, key, stat, timing="times"):
    t = row.get(timing, {}).get(key)
    return f"{t[stat] * 1e3:.3f}" if t else "n/a"


def _ratio(row, num, den, stat, timing="times"):
    a, b = row.get(timing, {}).get(num), row.get(timing, {}).get(den)
    return f"{a[stat] / b[stat]:.2f}" if a and b else "n/a"


def markdown(result: dict) -> str:
    lines = [
        f"Generated by `.venv/bin/python benchmarks/bench_yardstick.py --threads {result['threads']}` on "
        f"{result['date']}: CPU {result['cpu']} ({result['cpu_flags']}), horq kernel path "
        f"**{result['kernel_path']}**, {result['threads']} thread(s), batch 1; PyTorch {result['torch']}; "
        f"OpenVINO {result['openvino'] or 'not installed'}. Times in ms; the contenders of a row are timed "
        "round-robin in one process, cold (one call of each per round: each call finds the caches holding the "
        f"other contenders' data) and warm (rounds of {WARM_BLOCK} calls of each, the first not counted: a layer "
        "called in a loop). torch fp32 is the faster of NCHW and channels_last; int8 is PyTorch's "
        "quantized conv (x86 engine), 3x3 stride-1 rows only.",
    ]
    for title, stat, timing in TABLES:
        if not any(timing in r for r in result["rows"]):
            continue
        lines += [
            "",
            f"{title}:",
            "",
            "| layer | torch fp32 | torch int8 | OV fp32 | OV binary | horq o1 | horq o2 | horq o3 "
            "| OV binary / o1 | o2 / o1 | torch fp32 / o1 | o1 T binary MAC/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["rows"]:
            if timing not in r:
                continue
            tmac = r["macs"] / r[timing]["horq1"][stat] / 1e12
            lines.append(
                f"| {r['shape']} | " + " | ".join(_ms(r, key, stat, timing) for key in (
                    "torch_fp32", "torch_int8", "ov_fp32", "ov_binary", "horq1", "horq2", "horq3"))
                + f" | {_ratio(r, 'ov_binary', 'horq1', stat, timing)} | {_ratio(r, 'horq2', 'horq1', stat, timing)} "
                f"| {_ratio(r, 'torch_fp32', 'horq1', stat, timing)} | {tmac:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per row")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--doc", type=Path, help="markdown file whose yardstick section gets the tables")
    args = ap.parse_args(argv)
    if args.doc:
        check_marked_section(args.doc, DOC_SECTION)  # before minutes of timing
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    result = run(args.threads, args.seconds)
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.doc:
        replace_marked_section(args.doc, DOC_SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
