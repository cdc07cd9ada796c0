"""Whole-model latency: the packed horq runtime against PyTorch fp32 on the same network (docs/RESULTS.md).

For each model below, a zoo network is built, converted (weights' values do not change the cost), exported
to a temporary ``.horq`` file and timed with :func:`horq.apps.bench_model.bench_model`: batch 1 and 64, 1 and 2
threads, horq and PyTorch round-robin, medians and fastest runs. Writes ``OUT/model_bench.json`` and
``OUT/model_bench.md`` (default OUT: experiments/results/model-bench). About 2-4 minutes here.

    .venv/bin/python benchmarks/bench_model.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import horq
from horq import kernels
from horq.apps.bench_model import bench_model, format_bench
from horq.nn import HORQConfig, build_model, convert_

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ".venv/bin/python benchmarks/bench_model.py"

# (label, zoo model, input shape, order, first/last layers full precision)
MODELS = [
    ("cifar-vgg order 2", "cifar-vgg", (3, 32, 32), 2, True),
    ("cifar-vgg order 1", "cifar-vgg", (3, 32, 32), 1, True),
    ("cifar-vgg order 2, every layer binary", "cifar-vgg", (3, 32, 32), 2, False),
    ("mnist-cnn order 2 (the demo's model)", "mnist-cnn", (1, 28, 28), 2, True),
]


def _export(name, shape, order, first_last_fp, path):
    torch.manual_seed(0)
    model = build_model(name, in_shape=shape, num_classes=10)
    convert_(model, HORQConfig(order=order, keep_first_last_fp=first_last_fp))
    horq.export(model.eval(), path, input_shape=shape)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats, print only (no files written)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "model-bench"))
    args = ap.parse_args(argv)
    reps = dict(repeats=3, min_seconds=0.0) if args.quick else dict(repeats=20, min_seconds=1.0)
    info = kernels.info()
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, shape, order, first_last_fp in MODELS:
            path = Path(tmp) / "m.horq"
            _export(name, shape, order, first_last_fp, path)
            rows = bench_model(path, batches=(1, 64), threads=(1, 2), warmup=2, backend="native", **reps)
            results.append({"label": label, "model": name, "order": order, "first_last_fp": first_last_fp,
                            "rows": rows})
            print(f"{label}\n{format_bench(rows)}\n", flush=True)
    doc = {
        "command": COMMAND,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": info["cpu"], "kernel_path": info["in_use"], "available": info["available"],
        "torch": torch.__version__, "load_before": load_before, "load_after": os.getloadavg(),
        "results": results,
    }
    if args.quick:
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "model_bench.md").write_text(markdown(doc))
    print(f"wrote {out / 'model_bench.json'} and {out / 'model_bench.md'}")
    return 0


def markdown(doc) -> str:
    lb, la = doc["load_before"], doc["load_after"]
    lines = [
        f"Command: `{doc['command']}` ({doc['date']}).",
        "",
        f"CPU: {doc['cpu']}; horq kernel path {doc['kernel_path']} (available: {', '.join(doc['available'])}); "
        f"PyTorch {doc['torch']}. Load average (1/5/15 min) before: {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}; "
        f"after: {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}. Time in ms per batch; speedup = PyTorch fp32 / horq.",
        "",
    ]
    for res in doc["results"]:
        lines += [f"**{res['label']}**", "", format_bench(res["rows"], markdown=True), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
