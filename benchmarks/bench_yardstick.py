"""The yardstick layer suite: HORQ convolutions at orders 1-3 against PyTorch fp32 / int8 and, when the
optional `openvino` package is installed (`pip install ".[bench]"`), OpenVINO fp32 convolution and OpenVINO's
binary convolution (opset1 binary_convolution, xnor-popcount), on the same shapes, in one process.

    .venv/bin/python benchmarks/bench_yardstick.py [--threads 1] [--json docs/yardstick.json] [--doc docs/KERNELS.md]
                                                   [--geometries] [--runs 3]
    .venv/bin/python benchmarks/bench_yardstick.py --render RESULT.json [--doc docs/KERNELS.md]

Rows: daBNN's ResNet-18 layer suite (3x3, stride 1, C_in = C_out: 64ch 56x56, 128ch 28x28, 256ch 14x14, 512ch
7x7, 115.6 M binary MACs each), a 1x1 conv (256ch 28x28) and a stride-2 3x3 conv (256ch 14x14), batch 1. With
--geometries, the other geometries of ResNet-style networks instead (GEOMETRIES: the downsampling 3x3 and 1x1
shortcuts, a bottleneck's 1x1, padding 0, 5x5 and 7x7 kernels, batches of 32), into the doc's yardstick-geometries
section.
Each row's contenders are timed round-robin (horq.timing.interleaved_samples: the rounds after the first in a
shuffled order, so each contender follows every other one), so they share the machine's load; twice: cold (one call of
each per round, so each call finds the caches holding the other contenders' data: every contender reads an input array
of its own) and warm (rounds of WARM_BLOCK calls of each, the first of each not counted: a layer called in a loop, or
inside a network where its input comes from the layer before). All of that --runs times over all the rows, so that a
row's runs are a minute or more apart (this VM's speed changes for seconds at a time); a row's figures pool the calls of
every run, and the JSON keeps each run's median too. The tables keep cold medians and fastest runs and warm medians.
OpenVINO's binary conv takes a {0, 1} float input (it binarizes it itself) and u1 weights; its output is not compared
(its arithmetic differs), only its time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import sys
from functools import partial
from pathlib import Path

import numpy as np

from horq import kernels
from horq.apps.bench_kernels import cpu_flags, int8_conv, torch_setup
from horq.fileio import check_marked_section, replace_marked_section
from horq.timing import interleaved_samples

ROOT = Path(__file__).resolve().parents[1]
# name: (C_in, C_out, size, kernel, stride, padding, batch)
SHAPES = {
    "r18-64ch-56": (64, 64, 56, 3, 1, 1, 1),
    "r18-128ch-28": (128, 128, 28, 3, 1, 1, 1),
    "r18-256ch-14": (256, 256, 14, 3, 1, 1, 1),
    "r18-512ch-7": (512, 512, 7, 3, 1, 1, 1),
    "1x1-256ch-28": (256, 256, 28, 1, 1, 0, 1),
    "s2-256ch-14": (256, 256, 14, 3, 2, 1, 1),
}
# --geometries (issue 10: every conv geometry of ResNet-style networks on the fast path)
GEOMETRIES = {
    "3x3 s2 64->128 56x56": (64, 128, 56, 3, 2, 1, 1),
    "1x1 s2 64->128 56x56": (64, 128, 56, 1, 2, 0, 1),
    "1x1 s2 256->512 14x14": (256, 512, 14, 1, 2, 0, 1),
    "1x1 64->256 56x56": (64, 256, 56, 1, 1, 0, 1),
    "3x3 p0 128ch 28x28": (128, 128, 28, 3, 1, 0, 1),
    "5x5 64ch 32x32": (64, 64, 32, 5, 1, 2, 1),
    "7x7 64ch 32x32": (64, 64, 32, 7, 1, 3, 1),
    "3x3 64ch 32x32 batch 32": (64, 64, 32, 3, 1, 1, 32),
    "3x3 256ch 8x8 batch 32": (256, 256, 8, 3, 1, 1, 32),
    "1x1 s2 64->128 32x32 batch 32": (64, 128, 32, 1, 2, 0, 32),
}
ORDERS = (1, 2, 3)
WARM_BLOCK = 4  # warm timing: rounds of 4 calls per contender, the first of each not counted
RUNS = 3  # passes over the rows; a row's figures pool the calls of all of them
# The tables both yardstick scripts print (this one and bench_yardstick_models.py): (title, statistic, the rows' key
# of the timing: "times" cold, "warm").
TABLES = (("Medians, cold", "median", "times"), ("Fastest runs, cold (least disturbed by other jobs)", "best", "times"),
          (f"Medians, warm (rounds of {WARM_BLOCK} calls per contender, the first of each not counted)", "median",
           "warm"))
DOC_SECTION = "yardstick"  # the generated part of --doc: <!-- yardstick:begin --> ... <!-- yardstick:end -->
GEOMETRIES_SECTION = "yardstick-geometries"  # the same with --geometries


def openvino_setup(threads: int):
    """(compile_fp32, compile_binary) building one-op OpenVINO models, or None when openvino is missing."""
    try:
        import openvino as ov
        import openvino.opset1 as ops
    except ImportError:
        return None
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}

    def fp32(x, w, s, p):
        inp = ops.parameter(list(x.shape), ov.Type.f32)
        y = ops.convolution(inp, ops.constant(w), [s, s], [p, p], [p, p], [1, 1])
        # f32 said explicitly: left to itself OpenVINO runs bfloat16 on CPUs with AMX/AVX512_BF16
        req = core.compile_model(ov.Model([y], [inp]), "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"}
                                 ).create_infer_request()
        return lambda: req.infer([x])

    def binary(x, w, s, p):
        inp = ops.parameter(list(x.shape), ov.Type.f32)
        # u1 weights: bit = 1 for +1 (OpenVINO's convention); the pattern does not change the time.
        packed = np.packbits((w.reshape(-1) >= 0).astype(np.uint8), bitorder="little")
        wt = ov.Tensor(ov.Type.u1, ov.Shape(list(w.shape)))
        np.copyto(np.asarray(wt.data).reshape(-1)[: packed.size], packed.view(np.asarray(wt.data).dtype))
        y = ops.binary_convolution(inp, ov.op.Constant(wt), [s, s], [p, p], [p, p], [1, 1],
                                   "xnor-popcount", 0.0)
        req = core.compile_model(ov.Model([y], [inp]), "CPU", config).create_infer_request()
        xb = (x > 0).astype(np.float32)
        return lambda: req.infer([xb])

    return {"version": ov.get_version(), "fp32": fp32, "binary": binary}


def contenders(shape, threads, torch, int8_note, ov, rng) -> tuple[dict, str | None]:
    """``{contender: call}`` of one row, each with an input array of its own (a call that read the same array as
    the one before it would find it cached), and OpenVINO's refusal of its binary convolution, if any."""
    c, co, hw, k, s, p, n = shape
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((co, c, k, k)) * 0.05).astype(np.float32)
    pw = kernels.pack_weights(w)
    fns = {f"horq{o}": partial(kernels.Conv2dLayer(pw, order=o, stride=s, padding=p), x.copy()) for o in ORDERS}
    if torch is not None:
        torch.set_num_threads(threads)
        tw = torch.from_numpy(w)
        cx, cw = (t.contiguous(memory_format=torch.channels_last) for t in (torch.from_numpy(x), tw))
        fns["torch_nchw"] = partial(torch.nn.functional.conv2d, torch.from_numpy(x.copy()), tw, stride=s, padding=p)
        fns["torch_cl"] = partial(torch.nn.functional.conv2d, cx, cw, stride=s, padding=p)
        if int8_note is None and s == 1 and k == 3 and p == 1 and co == c:
            fns["torch_int8"] = int8_conv(torch, torch.from_numpy(x.copy()), tw)
    refused = None
    if ov is not None:
        fns["ov_fp32"] = ov["fp32"](x.copy(), w, s, p)
        try:
            fns["ov_binary"] = ov["binary"](x, w, s, p)  # its own {0, 1} copy
        except RuntimeError as e:  # its CPU plugin takes only some geometries (7x7 kernels: "unsupported")
            refused = str(e).strip().splitlines()[-1]
    return fns, refused


def run_stats(runs: list[list[float]]) -> dict:
    """A contender's timing over several runs: the median and fastest of all their calls, and each run's median."""
    every = [t for r in runs for t in r]
    return {"median": statistics.median(every), "best": min(every), "runs": [statistics.median(r) for r in runs]}


def method_note(result: dict, rows: str) -> str:
    """How a result file's rounds were run, for its tables' header (files from before round 37 have no "runs":
    one run, a fixed order, one input for all); ``rows``: what a run goes over ("rows", "models")."""
    if "runs" not in result:
        return ""
    note = ("; the rounds after the first in a shuffled order, so each contender follows every other one, and each "
            "reads an input array of its own")
    if result["runs"] > 1:
        note += f"; {result['runs']} runs over all the {rows}, each figure over the calls of all of them"
    return note


def run(threads: int, min_seconds: float, shapes: dict = SHAPES, runs: int = RUNS) -> dict:
    torch, int8_note = torch_setup()
    kernels.set_num_threads(threads)
    ov = openvino_setup(threads)
    rng = np.random.default_rng(1)
    built = {name: contenders(shape, threads, torch, int8_note, ov, rng) for name, shape in shapes.items()}
    samples: dict = {name: {"times": {}, "warm": {}} for name in shapes}
    for r in range(runs):  # each run goes over every row, so a row's runs are minutes apart
        for name, (fns, _) in built.items():
            with torch.no_grad() if torch is not None else contextlib.nullcontext():
                cold = interleaved_samples(fns, min_reps=20, min_seconds=min_seconds)
                warm = interleaved_samples(fns, min_reps=5, min_seconds=min_seconds / 2, block=WARM_BLOCK)
            for timing, res in (("times", cold), ("warm", warm)):
                for key, ts in res.items():
                    samples[name][timing].setdefault(key, []).append(ts)
            print(f"run {r + 1}/{runs} {name}: " + ", ".join(
                f"{key}={statistics.median(ts) * 1e3:.3f}ms" for key, ts in cold.items()), flush=True)
    rows = []
    for name, (c, co, hw, k, s, p, n) in shapes.items():
        oh = (hw + 2 * p - k) // s + 1
        row = {"shape": name, "C": c, "C_out": co, "HW": hw, "k": k, "stride": s, "padding": p, "batch": n,
               "macs": co * c * k * k * oh * oh * n}
        if built[name][1]:
            row["ov_binary_refused"] = built[name][1]
        for timing in ("times", "warm"):
            times = {key: run_stats(per_run) for key, per_run in samples[name][timing].items()}
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
            "int8_note": int8_note, "openvino": ov["version"] if ov else None, "geometries": shapes is GEOMETRIES,
            "runs": runs, "rows": rows}


def _ms(row, key, stat, timing="times"):
    t = row.get(timing, {}).get(key)
    return f"{t[stat] * 1e3:.3f}" if t else "n/a"


def _ratio(row, num, den, stat, timing="times"):
    a, b = row.get(timing, {}).get(num), row.get(timing, {}).get(den)
    return f"{a[stat] / b[stat]:.2f}" if a and b else "n/a"


def markdown(result: dict) -> str:
    geometries = result.get("geometries", False)
    rendered = (f" (these tables by `.venv/bin/python benchmarks/bench_yardstick.py --render {result['rendered_from']}`"
                " from its JSON)" if result.get("rendered_from") else "")
    lines = [
        f"Generated by `.venv/bin/python benchmarks/bench_yardstick.py --threads {result['threads']}"
        f"{' --geometries' if geometries else ''}` on {result['date']}{rendered}: CPU {result['cpu']} "
        f"({result['cpu_flags']}), horq kernel path **{result['kernel_path']}**, {result['threads']} thread(s), "
        f"batch {'as named' if geometries else 1}; PyTorch {result['torch']}; "
        f"OpenVINO {result['openvino'] or 'not installed'}. Times in ms; the contenders of a row are timed "
        "round-robin in one process, cold (one call of each per round: each call finds the caches holding the "
        f"other contenders' data) and warm (rounds of {WARM_BLOCK} calls of each, the first not counted: a layer "
        "called in a loop)" + method_note(result, "rows") + ". torch fp32 is the faster of NCHW and channels_last; "
        "int8 is PyTorch's quantized conv (x86 engine), 3x3 stride-1 rows with C_in = C_out only.",
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
    refused = [f"{r['shape']} ({r['ov_binary_refused']})" for r in result["rows"] if r.get("ov_binary_refused")]
    if refused:
        lines += ["", "OpenVINO's CPU plugin refused to compile its binary convolution for " + "; ".join(refused) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per row and run")
    ap.add_argument("--runs", type=int, default=RUNS, help=f"passes over the rows (default {RUNS})")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--doc", type=Path, help="markdown file whose yardstick section gets the tables")
    ap.add_argument("--geometries", action="store_true", help="the GEOMETRIES rows instead of the layer suite")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="time nothing: print (and with --doc write into its section) the tables of an earlier --json")
    args = ap.parse_args(argv)
    result = None
    if args.render:
        result = dict(json.loads(args.render.read_text()), rendered_from=str(args.render))
    geometries = result.get("geometries", False) if result else args.geometries
    section = GEOMETRIES_SECTION if geometries else DOC_SECTION
    if args.doc:
        check_marked_section(args.doc, section)  # before minutes of timing
    if result is None:
        if args.threads < 1:
            ap.error(f"--threads must be >= 1, got {args.threads}")
        if args.runs < 1:
            ap.error(f"--runs must be >= 1, got {args.runs}")
        result = run(args.threads, args.seconds, GEOMETRIES if args.geometries else SHAPES, args.runs)
    text = markdown(result)
    print(text)
    if args.json and not args.render:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.doc:
        replace_marked_section(args.doc, section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
