"""The yardstick's whole-model rows: zoo networks on the horq runtime at orders 1-3 against the same float
network in PyTorch fp32 and int8 and, when the optional `openvino` package is installed (`pip install
".[bench]"`), OpenVINO fp32, batch 1, 1 and 2 threads, in one process.

    .venv/bin/python benchmarks/bench_yardstick_models.py [--threads 1 2] [--json docs/yardstick_models.json]
                                                         [--runs 3] [--doc docs/KERNELS.md [--section NAME]]
    .venv/bin/python benchmarks/bench_yardstick_models.py --render RESULT.json [--doc ... --section NAME]

Models (zoo, default options, first and last layers float as `convert_` leaves them): resnet18 at 3x224x224
(1000 classes; ImageNet layout) and 3x32x32 (10 classes; CIFAR layout), cifar-vgg (3x32x32), mnist-cnn
(1x28x28). Contenders of a (model, threads) row are timed round-robin (horq.timing.interleaved_samples: the rounds
after the first in a shuffled order, so each contender follows every other one; each reads an input array of its own),
so they share the machine's load; medians and fastest runs are kept. Twice: cold (one call of each contender per
round: each call finds the caches full of the others' data) and warm (rounds of WARM_BLOCK calls of each, the first of
each not counted: a model called in a loop). All of that --runs times over all the models, a model's runs a minute or
more apart (this VM's speed changes for seconds at a time); a row's figures pool the calls of every run, and the JSON
keeps each run's median too.

* horq oK: the model converted at order K and exported (horq.export), run by horq.runtime (native backend).
* torch fp32: the float zoo model, eval mode, inference_mode, the faster of NCHW and channels_last.
* torch int8: torch.ao FX graph-mode static quantization of the float model (x86 engine, default qconfig
  mapping, calibrated on a few random batches); n/a with the reason where it fails.
* OV fp32: openvino.convert_model of the float model (example input), compiled for the CPU with
  INFERENCE_NUM_THREADS, PERFORMANCE_HINT=LATENCY, NUM_STREAMS=1 and INFERENCE_PRECISION_HINT=f32.
  OV default: the same without the precision hint; OpenVINO then runs bfloat16 on CPUs with AMX or
  AVX512_BF16 (recorded in the JSON), which is not an fp32 result but is what a user gets by default.
* OV binary, OV bin plain: the order-1 file's OpenVINO twins (horq/apps/openvino_twin.py), the same binary
  network on OpenVINO's BinaryConvolution: with XNOR-Net's betas (horq order 1's function; its output is compared
  with horq's before timing) and in OpenVINO's own form without them (a lower bound), f32, the same thread count.

It also profiles (Model.profile) each ResNet-18 at orders 1 and 2, 1 thread, and keeps the time per op type.
Weights are random (seeded): only time is measured.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np

# PyTorch's OpenMP workers spin after each call by default, holding a core the next contender of a
# round-robin (or a profile) needs on a two-core machine; passive waiting keeps each row about its contender.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402 (after the OpenMP setting)

import horq
import horq.runtime as rt
from horq import format as hformat
from horq import kernels
from horq.apps import openvino_twin
from horq.apps.bench_kernels import cpu_flags
from horq.fileio import check_marked_section, replace_marked_section
from horq.nn import HORQConfig, build_model, convert_
from horq.timing import interleaved_samples

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_yardstick import TABLES, WARM_BLOCK, method_note, run_stats  # noqa: E402 (the layer yardstick)

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ".venv/bin/python benchmarks/bench_yardstick_models.py"
# label: (zoo model, input shape, classes)
MODELS = {
    "resnet18-224": ("resnet18", (3, 224, 224), 1000),
    "resnet18-32": ("resnet18", (3, 32, 32), 10),
    "cifar-vgg": ("cifar-vgg", (3, 32, 32), 10),
    "mnist-cnn": ("mnist-cnn", (1, 28, 28), 10),
}
ORDERS = (1, 2, 3)
PROFILED = ("resnet18-224", "resnet18-32")
RUNS = 3  # passes over the models; a row's figures pool the calls of all of them
DOC_SECTION = "yardstick-models"  # --doc gets the part between <!-- yardstick-models:begin/end -->


def float_model(name, shape, classes):
    torch.manual_seed(0)
    model = build_model(name, in_shape=shape, num_classes=classes).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained model has
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model


def horq_models(model, shape, tmp, orders=ORDERS) -> dict:
    out = {}
    for order in orders:
        m = convert_(copy.deepcopy(model), HORQConfig(order=order))
        path = Path(tmp) / f"o{order}.horq"
        horq.export(m.eval(), path, input_shape=shape)
        out[order] = rt.load(path, backend="native")
    return out


def int8_model(model, x):
    """FX graph-mode static quantization (x86 engine), or the reason it failed."""
    try:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (x,))
            gen = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for _ in range(4):
                    q(torch.randn((4, *x.shape[1:]), generator=gen))
            q = convert_fx(q)
        with torch.no_grad():
            q(x)
        return q, None
    except Exception as exc:  # noqa: BLE001 (any failure is reported in the table, not raised)
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def openvino_models(model, x, threads):
    """``{(kind, threads): infer_request}`` of the float model, kind ``"fp32"`` (INFERENCE_PRECISION_HINT
    f32) and ``"default"`` (OpenVINO's own choice: bfloat16 on CPUs with AVX512_BF16/AMX), and the default's
    precision; (None, None, None) when openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(model, example_input=x)
    core = ov.Core()
    reqs, default_precision = {}, None
    for n in threads:
        config = {"INFERENCE_NUM_THREADS": n, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        for kind, extra in (("fp32", {"INFERENCE_PRECISION_HINT": "f32"}), ("default", {})):
            compiled = core.compile_model(converted, "CPU", {**config, **extra})
            if kind == "default":
                hint = compiled.get_property("INFERENCE_PRECISION_HINT")
                default_precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
            reqs[kind, n] = compiled.create_infer_request()
    return reqs, ov.get_version(), default_precision


def openvino_twins(path, x, threads, horq_output):
    """``{(kind, threads): infer_request}`` of the order-1 file's OpenVINO twins (horq.apps.openvino_twin: kind
    ``"binary"``, horq's function with XNOR-Net's betas, and ``"binary_plain"``, OpenVINO's own binary form without
    them) and the binary twin's ``max |twin - horq| / max |horq|`` (checked); ({}, None) without openvino."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return {}, None
    hfile = hformat.load(path)
    reqs, rel = {}, None
    for kind, beta in (("binary", True), ("binary_plain", False)):
        for n in threads:
            reqs[kind, n] = openvino_twin.infer_request(hfile, x.shape[0], n, beta=beta)
            if beta:
                rel = openvino_twin.check(reqs[kind, n].infer([x])[0], horq_output)
    return reqs, rel


class Bench:
    """One model's contenders (built once, timed over several runs) and their samples."""

    def __init__(self, label, threads, tmp, log):
        self.label, self.threads = label, threads
        name, shape, classes = MODELS[label]
        self.name, self.shape = name, shape
        model = float_model(name, shape, classes)
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        self.x = x
        tx = torch.from_numpy(x)
        cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        q, self.int8_note = int8_model(model, tx)
        ov_reqs, self.ov_version, self.ov_default = openvino_models(model, tx, threads)
        (tmp / label).mkdir()
        self.horq_m = horq_models(model, shape, tmp / label)
        twins, self.twin_rel = openvino_twins(tmp / label / "o1.horq", x, threads, self.horq_m[1](x))
        if self.twin_rel is not None:
            log(f"{label}: OpenVINO binary twin against horq order 1: max |difference| {self.twin_rel:.2g} of max "
                "|output|")
        # Every contender reads an input array of its own: a call that read the array the one before it had just
        # read would find it cached.
        self.fns = {}
        for n in threads:
            fns = {f"horq{o}": partial(m, x.copy()) for o, m in self.horq_m.items()}
            fns["torch_nchw"] = partial(model, torch.from_numpy(x.copy()))
            fns["torch_cl"] = partial(cl_model, tx.contiguous(memory_format=torch.channels_last))
            if q is not None:
                fns["torch_int8"] = partial(q, torch.from_numpy(x.copy()))
            if ov_reqs is not None:
                fns["ov_fp32"] = partial(ov_reqs["fp32", n].infer, [x.copy()])
                fns["ov_default"] = partial(ov_reqs["default", n].infer, [x.copy()])
            for kind in ("binary", "binary_plain"):
                if (kind, n) in twins:
                    fns[f"ov_{kind}"] = partial(twins[kind, n].infer, [x.copy()])
            self.fns[n] = fns
        self.samples = {(n, t): {} for n in threads for t in ("times", "warm", "alone")}

    def time_once(self, min_seconds, log):
        """One run: each thread count's round-robin rounds, cold and warm, then horq's orders alone."""
        for n in self.threads:
            torch.set_num_threads(n)
            with rt.num_threads(n), torch.inference_mode():
                cold = interleaved_samples(self.fns[n], min_reps=10, min_seconds=min_seconds)
                warm = interleaved_samples(self.fns[n], min_reps=5, min_seconds=min_seconds / 2, block=WARM_BLOCK)
            for timing, res in (("times", cold), ("warm", warm)):
                for k, ts in res.items():
                    self.samples[n, timing].setdefault(k, []).append(ts)
            log(f"{self.label} threads={n} cold: "
                + ", ".join(f"{k}={statistics.median(ts) * 1e3:.2f}ms" for k, ts in cold.items()))
        for n in self.threads:  # horq's thread scaling without other libraries' worker threads in the round
            with rt.num_threads(n):
                res = interleaved_samples({k: v for k, v in self.fns[n].items() if k.startswith("horq")},
                                          min_reps=10, min_seconds=min_seconds / 2)
            for k, ts in res.items():
                self.samples[n, "alone"].setdefault(k, []).append(ts)
            log(f"{self.label} horq alone, {n} thread(s): "
                + ", ".join(f"{k}={min(ts) * 1e3:.2f}ms" for k, ts in res.items()))

    def rows(self) -> list:
        rows = []
        for n in self.threads:
            row = {"model": self.label, "zoo": self.name, "shape": list(self.shape), "threads": n}
            if self.twin_rel is not None:
                row["ov_binary_vs_horq1"] = self.twin_rel
            for timing in ("times", "warm"):
                times = {k: run_stats(runs) for k, runs in self.samples[n, timing].items()}
                nchw, cl = times.pop("torch_nchw"), times.pop("torch_cl")
                times["torch_fp32"] = dict(nchw if nchw["median"] <= cl["median"] else cl,
                                           layout="NCHW" if nchw["median"] <= cl["median"] else "channels_last")
                row[timing] = times
            row["horq_alone"] = {k: run_stats(runs) for k, runs in self.samples[n, "alone"].items()}
            rows.append(row)
        return rows

    def profiles(self, log) -> dict:
        profiles = {}
        if self.label in PROFILED and 1 in self.threads:
            torch.set_num_threads(1)
            with rt.num_threads(1):
                for order in (1, 2):
                    prof = self.horq_m[order].profile(self.x, repeats=20)
                    profiles[f"o{order}"] = {
                        "steps_ms": prof.steps_ms, "call_ms": prof.call_ms,
                        "by_op": {op: {"count": v["count"], "ms": v["ms"]} for op, v in prof.by_op.items()},
                        "nodes": [{"name": nd.name, "op": nd.op, "shape": list(nd.shape), "ms": nd.ms,
                                   "gmacs": nd.gmacs} for nd in prof.nodes],
                    }
                    log(f"{self.label} o{order} profile:\n{prof.format()}")
        return profiles


def run(labels, threads, min_seconds, runs=RUNS) -> dict:
    info = kernels.info()
    load_before = os.getloadavg()
    log = lambda s: print(s, flush=True)  # noqa: E731
    rows, profiles, int8_notes = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        benches = [Bench(label, threads, Path(tmp), log) for label in labels]
        for r in range(runs):  # each run goes over every model, so a model's runs are a minute or more apart
            log(f"run {r + 1}/{runs}")
            for b in benches:
                b.time_once(min_seconds, log)
        for b in benches:
            rows += b.rows()
            if p := b.profiles(log):
                profiles[b.label] = p
            if b.int8_note:
                int8_notes[b.label] = b.int8_note
    ov_version = benches[-1].ov_version if benches else None
    ov_default = benches[-1].ov_default if benches else None
    return {"command": COMMAND, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": info["cpu"], "cpu_flags": cpu_flags(), "kernel_path": info["in_use"], "threads": list(threads),
            "torch": torch.__version__, "openvino": ov_version, "openvino_default_precision": ov_default,
            "runs": runs, "load_before": load_before,
            "load_after": os.getloadavg(), "int8_notes": int8_notes, "rows": rows, "profiles": profiles}


def _ms(row, key, stat, timing="times"):
    t = row.get(timing, {}).get(key)
    return f"{t[stat] * 1e3:.2f}" if t else "n/a"


def _ratio(row, num, den, stat, timing="times"):
    a, b = row.get(timing, {}).get(num), row.get(timing, {}).get(den)
    return f"{a[stat] / b[stat]:.1f}" if a and b else "n/a"


NON_BINARY_NOTE = ("binary = the binary_conv2d/binary_linear steps (input quantization, XNOR-popcount GEMM, fused "
                   "epilogue); everything else is the float stem and classifier and the glue between layers")


def twin_table(result: dict) -> list:
    """The rows with OpenVINO's binary twins (horq.apps.openvino_twin) as a table of its own; [] without them."""
    rows = [r for r in result["rows"] if "ov_binary" in r.get("times", {})]
    if not rows:
        return []
    lines = [
        "", "Against OpenVINO's binary convolution on the whole network (`horq/apps/openvino_twin.py`): OV binary is "
        "the order-1 file rebuilt from OpenVINO's FakeQuantize (levels 2) and BinaryConvolution with XNOR-Net's "
        "betas (mean |x| per receptive field) and the file's alphas, the same function as horq order 1 (max "
        "|difference| / max |output| in the last column, checked before timing); OV bin plain is OpenVINO's own "
        "binary form, per-channel scales only and each BatchNorm folded into the binarization thresholds: less "
        "arithmetic, a lower bound for such a network in OpenVINO. Cold medians in ms; ratios are OpenVINO / horq "
        "order 1 (cold median, warm median, fastest cold run):", "",
        "| model | threads | OV binary | OV bin plain | horq o1 | OV binary / o1 | OV bin plain / o1 | twin vs horq |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratios = [" / ".join(_ratio(r, f"ov_{kind}", "horq1", stat, timing)
                             for _, stat, timing in (("cold", "median", "times"), ("warm", "median", "warm"),
                                                     ("fastest", "best", "times")))
                  for kind in ("binary", "binary_plain")]
        cells = [_ms(r, k, "median") for k in ("ov_binary", "ov_binary_plain", "horq1")]
        lines.append(f"| {r['model']} | {r['threads']} | " + " | ".join(cells + ratios)
                     + f" | {r.get('ov_binary_vs_horq1', float('nan')):.1g} |")
    return lines


def markdown(result: dict) -> str:
    lb, la = result["load_before"], result["load_after"]
    rendered = (f" (these tables by `{COMMAND} --render {result['rendered_from']}` from its JSON)"
                if result.get("rendered_from") else "")
    lines = [
        f"Generated by `{result['command']}` on {result['date']}{rendered}: CPU {result['cpu']} "
        f"({result['cpu_flags']}), "
        f"horq kernel path **{result['kernel_path']}**, batch 1; PyTorch {result['torch']}; OpenVINO "
        f"{result['openvino'] or 'not installed'}. Load average (1/5/15 min) before {lb[0]:.1f} / {lb[1]:.1f} / "
        f"{lb[2]:.1f}, after {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (two shared cores). Times in ms; the "
        "contenders of a row are timed round-robin in one process: cold, one call of each per round, so every "
        "call finds the caches holding the other contenders' data (horq's binary weights, 1.4 MB for ResNet-18, "
        "would stay in a core's L2 between calls; a float model's 45 MB does not in any case); warm, rounds of "
        f"{WARM_BLOCK} calls of each, the first of each not counted (a model called in a loop)"
        + method_note(result, "models") + ". torch fp32 is "
        "the faster of NCHW and channels_last; torch int8 is FX graph-mode static quantization (x86 engine) of "
        "the same float model; OV fp32 is OpenVINO on the same float model with INFERENCE_PRECISION_HINT f32; "
        "OV default is OpenVINO left to choose (here it chose "
        f"{result.get('openvino_default_precision') or 'n/a'}: on CPUs with AMX/AVX512_BF16 OpenVINO runs a "
        "float model in bfloat16 unless told f32, so it is not an fp32 result). Ratios are contender / horq "
        "order K (above 1: horq is faster).",
    ]
    if result["int8_notes"]:
        lines += ["", "torch int8 n/a: " + "; ".join(f"{k}: {v}" for k, v in result["int8_notes"].items())]
    for title, stat, timing in TABLES:
        if not any(timing in r for r in result["rows"]):
            continue
        lines += [
            "", f"{title}:", "",
            "| model | threads | torch fp32 | torch int8 | OV fp32 | OV default | horq o1 | horq o2 | horq o3 "
            "| fp32 / o1 | fp32 / o2 | fp32 / o3 | OV fp32 / o1 | OV fp32 / o2 | OV default / o1 | int8 / o1 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: |",
        ]
        for r in result["rows"]:
            cells = [_ms(r, k, stat, timing) for k in ("torch_fp32", "torch_int8", "ov_fp32", "ov_default", "horq1",
                                                       "horq2", "horq3")]
            ratios = [_ratio(r, "torch_fp32", f"horq{o}", stat, timing) for o in ORDERS]
            ratios += [_ratio(r, "ov_fp32", "horq1", stat, timing), _ratio(r, "ov_fp32", "horq2", stat, timing),
                       _ratio(r, "ov_default", "horq1", stat, timing), _ratio(r, "torch_int8", "horq1", stat, timing)]
            lines.append(f"| {r['model']} | {r['threads']} | " + " | ".join(cells + ratios) + " |")
    lines += twin_table(result)
    by_model = {}
    for r in result["rows"]:
        by_model.setdefault(r["model"], {})[r["threads"]] = r
    scaling = []
    for label, per in by_model.items():
        if 1 in per and 2 in per:
            s = [f"o{o} {per[1]['times'][f'horq{o}']['best'] / per[2]['times'][f'horq{o}']['best']:.2f}x"
                 for o in ORDERS]
            scaling.append(f"{label}: " + ", ".join(s))
    if scaling:
        lines += ["", "2 threads against 1 (horq in the rounds above, fastest runs): " + "; ".join(scaling) + "."]
    alone = []
    for label, per in by_model.items():
        if 1 in per and 2 in per and "horq_alone" in per[1]:
            a1, a2 = per[1]["horq_alone"], per[2]["horq_alone"]
            alone.append(f"{label}: " + ", ".join(
                f"o{o} {a1[f'horq{o}']['best'] * 1e3:.2f} -> {a2[f'horq{o}']['best'] * 1e3:.2f} ms "
                f"({a1[f'horq{o}']['best'] / a2[f'horq{o}']['best']:.2f}x)" for o in ORDERS))
    if alone:
        lines += ["", "horq alone (its orders round-robin, no other library in the round; fastest runs, 1 -> 2 "
                  "threads): " + "; ".join(alone) + "."]
    if result["profiles"]:
        lines += ["", "Where a horq call's time goes (`Model.profile`, 1 thread, medians of 20 runs; % of the "
                  f"steps' sum; {NON_BINARY_NOTE}):", "",
                  "| model | order | steps ms | binary | float conv (stem; its pool fused, round 8) | max_pool2d "
                  "| affine | add (+relu) "
                  "| floor | linear | other | non-binary |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for label, per in result["profiles"].items():
            for order, p in per.items():
                total, by = p["steps_ms"], p["by_op"]
                share = {op: 100 * v["ms"] / total for op, v in by.items()}
                binary = share.get("binary_conv2d", 0) + share.get("binary_linear", 0)
                named = ("conv2d", "max_pool2d", "affine", "add", "floor", "linear")
                other = 100 - binary - sum(share.get(op, 0) for op in named)
                lines.append(f"| {label} | {order[1:]} | {total:.2f} | {binary:.0f}% | "
                             + " | ".join(f"{share.get(op, 0):.0f}%" for op in named)
                             + f" | {other:.0f}% | {100 - binary:.0f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per contender, row and run")
    ap.add_argument("--runs", type=int, default=RUNS, help=f"passes over the models (default {RUNS})")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--doc", type=Path, help="markdown file whose marked section (--section) gets the tables")
    ap.add_argument("--section", default=DOC_SECTION, help=f"the section's name in --doc (default {DOC_SECTION})")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="time nothing: print (and with --doc write) the tables of an earlier run's --json file")
    args = ap.parse_args(argv)
    if args.doc:
        check_marked_section(args.doc, args.section)  # before minutes of timing
    if args.render:
        result = dict(json.loads(args.render.read_text()), rendered_from=str(args.render))
    else:
        if min(args.threads) < 1:
            ap.error(f"--threads must be >= 1, got {args.threads}")
        if args.runs < 1:
            ap.error(f"--runs must be >= 1, got {args.runs}")
        before = torch.get_num_threads()
        result = run(args.models, args.threads, args.seconds, args.runs)
        result["command"] = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
        torch.set_num_threads(before)
    text = markdown(result)
    print(text)
    if args.json and not args.render:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.doc:
        replace_marked_section(args.doc, args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
