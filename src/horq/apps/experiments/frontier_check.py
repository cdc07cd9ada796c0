"""``horq analyze frontier-check``: trained models with different per-layer orders, side by side on the test split.

The frontier is chosen on held-out data; this is where a chosen point meets the test split, after fine-tuning:
for each checkpoint, its per-layer orders, test accuracy (PyTorch, eval mode) and the accuracy of its exported
``.horq`` file on the native runtime, and the whole exported model's batch-1, 1-thread latency, every model
timed round-robin in one process (the machine is shared: interleaving gives each the same load).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from horq.apps.experiments.common import command_line, machine_info, pyplot, report_header, save_report


def run_check(checkpoints, *, out, labels=None, data_root=None, min_seconds: float = 3.0, argv=None) -> dict:
    """Measures every checkpoint (module docstring); writes check.json, check.md and check.png under ``out``."""
    import numpy as np
    import torch

    import horq
    import horq.runtime
    from horq.apps.experiments.frontier import binary_layers
    from horq.data import load
    from horq.nn.checkpoint import load_model
    from horq.nn.resume import check_data_fits
    from horq.nn.training import evaluate
    from horq.timing import interleaved_times

    labels = list(labels) if labels else [Path(c).parent.name for c in checkpoints]
    if len(labels) != len(checkpoints):
        raise ValueError(f"--labels: {len(labels)} labels for {len(checkpoints)} checkpoints")
    rows, fns, data = [], {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, label) in enumerate(zip(checkpoints, labels, strict=True)):
            model, ckpt = load_model(path)
            args = ckpt.get("args") or {}
            if data is None:
                data = args.get("data")
                ds = load(data, "test", root=data_root or args.get("data_root"))
                x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.y)
            elif args.get("data") != data:
                raise ValueError(f"{path} was trained on {args.get('data')!r}, the first checkpoint on {data!r}")
            check_data_fits(ckpt, ds.x.shape[1:], ds.num_classes, what=str(path), data=data)
            acc = evaluate(model, x, y)[1]
            file = Path(tmp) / f"m{i}.horq"
            horq.export(model, file, input_shape=tuple(ckpt["model_kwargs"]["in_shape"]))
            rt = horq.runtime.load(file, backend="native")
            with horq.runtime.num_threads(1):
                rt_acc = float(np.mean(rt.predict(ds.x) == ds.y))
            x1 = ds.x[:1].copy()
            fns[i] = (lambda rt=rt, x1=x1: rt(x1))
            rows.append({"label": label, "checkpoint": str(path), "epochs": ckpt.get("epoch"),
                         "orders": {n: m.order for n, m in binary_layers(model)},
                         "test_acc": acc, "runtime_test_acc": rt_acc, "file_bytes": file.stat().st_size})
        with horq.runtime.num_threads(1):
            times = interleaved_times(fns, min_reps=50, min_seconds=min_seconds, max_reps=5000)
    for i, r in enumerate(rows):
        r["latency_ms"], r["latency_ms_fastest"] = 1e3 * times[i][0], 1e3 * times[i][1]
    result = {"command": command_line(argv) if argv is not None else None, "machine": machine_info(),
              "data": data, "test_samples": int(len(y)), "rows": rows}
    out = Path(out)
    save_report(out, "check", result, markdown, plot)
    return result


def markdown(result: dict) -> str:
    lines = [
        *report_header(result),
        f"`{result['data']}` test split ({result['test_samples']} samples). Latency: the whole exported model on "
        "the native runtime, batch 1, 1 thread, median (fastest run in brackets), all models timed round-robin.",
        "",
        "| model | orders per binary layer | test acc (%) | runtime test acc (%) | latency ms |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        orders = ", ".join(f"{n}: {k}" for n, k in r["orders"].items())
        lines.append(f"| {r['label']} | {orders} | {100 * r['test_acc']:.2f} | {100 * r['runtime_test_acc']:.2f} | "
                     f"{r['latency_ms']:.3f} ({r['latency_ms_fastest']:.3f}) |")
    return "\n".join(lines).lstrip("\n")


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for r in result["rows"]:
        ax.scatter([r["latency_ms"]], [100 * r["test_acc"]], s=30)
        ax.annotate(r["label"], (r["latency_ms"], 100 * r["test_acc"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("latency (ms, batch 1, 1 thread, native runtime)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"fine-tuned per-layer orders on {result['data']}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
