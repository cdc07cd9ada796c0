"""``horq experiment accuracy``: one architecture, one recipe, the same seeds, at FP and orders 0-4.

Every run goes through :func:`horq.nn.training.train` into ``OUT/runs/<order>-s<seed>/`` (checkpoints and
metrics, as ``horq train`` writes them). A run whose ``metrics.json`` already holds all epochs with the same
settings is read back instead of retrained, so an interrupted experiment continues where it stopped.
Outputs: ``OUT/accuracy.json`` (settings, machine, every run's per-epoch metrics, the summary),
``OUT/accuracy.md`` (the table) and ``OUT/accuracy.png`` (test accuracy and loss per epoch, one line per order).
The accuracy reported is the last epoch's (no selection on the test set).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from horq.apps.experiments.common import (
    command_line,
    machine_info,
    order_key,
    order_label,
    pyplot,
    report_header,
    save_report,
    write_json,
)

DEFAULT_MODEL = {"cifar10": "cifar-vgg"}  # every other dataset: mnist-cnn
DEFAULT_ORDERS = (None, 0, 1, 2, 3, 4)

# Targets from docs/MATH.md ("Reported results"), reported against, met or not.
MNIST_ORDER2_MAX_ERROR = 0.0125  # HORQ order 2 about 1.25% test error on MNIST (XNOR about 1.96%)
FASHION_MIN_GAP_CLOSED = 0.5  # order 2 should close at least half of the XNOR-to-FP accuracy gap
# The project's targets for full-length runs (at least FULL_LENGTH_EPOCHS epochs), stricter than the paper's.
FULL_LENGTH_EPOCHS = 10
MNIST_FULL_ORDER2_MAX_ERROR = 0.010  # mean over seeds; and below XNOR's error in every seed
FASHION_FULL_MAX_FP_DROP = 0.010  # order 2 within one point of full precision
FASHION_FULL_MIN_GAP_CLOSED = 2 / 3


def _check_data(data: str, root: str | None) -> None:
    """Fails early, with the fetch instruction, when the dataset's files are not there."""
    from horq.data import load
    from horq.data.errors import DatasetError

    try:
        load(data, "test", root=root)
    except DatasetError as exc:
        hint = (" CIFAR-10 cannot be downloaded on every machine; copy the official python-format files "
                "(cifar-10-batches-py/) into <root>/cifar10/ and pass --data-root <root>.") if data == "cifar10" else ""
        raise ValueError(f"{data} is not available: {exc}.{hint}") from exc


def _run_dir(out: Path, order, seed: int) -> Path:
    return out / "runs" / f"{order_key(order)}-s{seed}"


def _reuse(run_dir: Path, settings) -> dict | None:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    want = dataclasses.asdict(settings)
    same = all(saved["settings"].get(k) == v for k, v in want.items() if k not in ("progress", "threads"))
    if not same or len(saved["epochs"]) != settings.epochs:
        return None
    rows = saved["epochs"]
    return {"final_test_acc": rows[-1]["test_acc"], "train_seconds": round(sum(r["epoch_seconds"] for r in rows), 3),
            "epochs": rows, "reused": True}


def run_accuracy(*, data: str, out, model: str | None = None, epochs: int = 3, seeds=(0,), orders=DEFAULT_ORDERS,
                 limit_train: int | None = None, limit_test: int | None = None, data_root: str | None = None,
                 batch_size: int = 64, lr: float = 2e-3, threads: int | None = None, model_args=None, argv=None,
                 progress: bool = True) -> dict:
    """Trains every (order, seed) pair and writes the JSON, markdown and PNG outputs.

    Args:
        data: dataset name (:func:`horq.data.load`).
        out: output folder.
        model: zoo model (default ``cifar-vgg`` for cifar10, else ``mnist-cnn``).
        epochs, batch_size, lr, threads, limit_train, limit_test: the recipe, identical for every run.
        model_args: the zoo builder's options (e.g. ``{"width": 0.5}``), the same for every run.
        seeds: one run per seed and order.
        orders: ``None`` (full precision) and/or integers >= 0.
        argv: the CLI arguments, recorded as the command that produced the result.

    Returns:
        The result dict written to ``OUT/accuracy.json``.

    Raises:
        ValueError: missing data (with how to get it), bad arguments.
    """
    from horq.nn.training import TrainSettings, train

    if not seeds or not orders:
        raise ValueError("need at least one seed and one order")
    model = model or DEFAULT_MODEL.get(data, "mnist-cnn")
    _check_data(data, data_root)
    out = Path(out)
    result = {
        "command": command_line(argv) if argv is not None else None,
        "machine": machine_info(),
        "settings": {"data": data, "model": model, "model_args": dict(model_args or {}), "epochs": epochs,
                     "seeds": list(seeds),
                     "orders": [order_key(o) for o in orders], "limit_train": limit_train, "limit_test": limit_test,
                     "batch_size": batch_size, "lr": lr, "schedule": "cosine", "optimizer": "Adam",
                     "threads": threads, "data_root": data_root},
        "runs": [],
    }
    for order in orders:
        for seed in seeds:
            settings = TrainSettings(model=model, model_args=dict(model_args or {}), data=data, data_root=data_root,
                                     order=order, epochs=epochs,
                                     batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                                     out=str(_run_dir(out, order, seed)), limit_train=limit_train,
                                     limit_test=limit_test, progress=False, schedule="cosine")
            summary = _reuse(Path(settings.out), settings) or train(settings).summary
            run = {"order": order_key(order), "seed": seed, "final_test_acc": summary["final_test_acc"],
                   "train_seconds": summary["train_seconds"], "epochs": summary["epochs"],
                   "checkpoint": str(Path(settings.out) / "last.pt"), "reused": bool(summary.get("reused"))}
            result["runs"].append(run)
            if progress:
                print(f"{order_label(order)} seed {seed}: test acc {run['final_test_acc']:.4f} "
                      f"({run['train_seconds']:.1f}s{', reused' if run['reused'] else ''})", flush=True)
            result["summary"] = summarize(result["runs"])
            write_json(out / "accuracy.json", result)
    result["targets"] = targets(data, result["summary"], epochs=epochs)
    save_report(out, "accuracy", result, markdown, plot)
    return result


def _mean_spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(runs: list[dict]) -> list[dict]:
    """One row per order (FP first, then by order): mean and sample std over seeds of the final test accuracy."""
    rows = []
    for key in sorted(dict.fromkeys(r["order"] for r in runs), key=lambda k: -1 if k == "fp" else int(k[1:])):
        mine = [r for r in runs if r["order"] == key]
        accs = [r["final_test_acc"] for r in mine]
        mean, spread = _mean_spread(accs)
        rows.append({
            "order": key, "seeds": [r["seed"] for r in mine], "test_acc": accs,
            "test_acc_mean": mean, "test_acc_std": spread, "test_error_mean": 1.0 - mean,
            "test_loss_mean": statistics.fmean(r["epochs"][-1]["test_loss"] for r in mine),
            "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in mine),
        })
    return rows


def targets(data: str, summary: list[dict], *, epochs: int = 0) -> list[dict]:
    """The targets of docs/MATH.md "Reported results" for this dataset, and from ``epochs`` >=
    FULL_LENGTH_EPOCHS the project's full-length targets too, each with the measured value and whether it is
    met."""
    by = {r["order"]: r for r in summary}
    out = []
    if epochs >= FULL_LENGTH_EPOCHS:
        out += _full_length_targets(data, by)
    if data == "mnist" and "o2" in by:
        e2 = by["o2"]["test_error_mean"]
        out.append({"target": f"order-2 test error <= {MNIST_ORDER2_MAX_ERROR:.2%}", "value": f"{e2:.2%}",
                    "met": e2 <= MNIST_ORDER2_MAX_ERROR})
        if "o1" in by:
            e1 = by["o1"]["test_error_mean"]
            out.append({"target": "order-2 error below XNOR's (order 1)", "value": f"{e2:.2%} vs {e1:.2%}",
                        "met": e2 < e1})
    if data == "fashion-mnist" and {"fp", "o1", "o2"} <= set(by):
        fp, a1, a2 = (by[k]["test_acc_mean"] for k in ("fp", "o1", "o2"))
        gap = fp - a1
        closed = (a2 - a1) / gap if gap > 0 else float("nan")
        out.append({"target": f"order 2 closes >= {FASHION_MIN_GAP_CLOSED:.0%} of the XNOR-FP gap",
                    "value": f"{closed:.0%} (FP {fp:.2%}, XNOR {a1:.2%}, order 2 {a2:.2%})",
                    "met": gap > 0 and closed >= FASHION_MIN_GAP_CLOSED})
    return out


def _per_seed(row: dict) -> dict:
    return dict(zip(row.get("seeds", []), row.get("test_acc", []), strict=True))


def _full_length_targets(data: str, by: dict) -> list[dict]:
    out = []
    if data == "mnist" and "o2" in by:
        e2 = by["o2"]["test_error_mean"]
        out.append({"target": f"full length: order-2 test error <= {MNIST_FULL_ORDER2_MAX_ERROR:.1%} (mean)",
                    "value": f"{e2:.2%}", "met": e2 <= MNIST_FULL_ORDER2_MAX_ERROR})
        if "o1" in by:
            a1, a2 = _per_seed(by["o1"]), _per_seed(by["o2"])
            seeds = sorted(set(a1) & set(a2))
            pairs = ", ".join(f"seed {s}: {1 - a2[s]:.2%} vs {1 - a1[s]:.2%}" for s in seeds)
            out.append({"target": "full length: order-2 error below XNOR's in every seed", "value": pairs,
                        "met": bool(seeds) and all(a2[s] > a1[s] for s in seeds)})
    if data == "fashion-mnist" and {"fp", "o1", "o2"} <= set(by):
        fp, a1, a2 = (by[k]["test_acc_mean"] for k in ("fp", "o1", "o2"))
        out.append({"target": f"full length: order 2 within {FASHION_FULL_MAX_FP_DROP * 100:.0f} point of FP",
                    "value": f"{(fp - a2) * 100:.2f} points", "met": fp - a2 <= FASHION_FULL_MAX_FP_DROP})
        gap = fp - a1
        closed = (a2 - a1) / gap if gap > 0 else float("nan")
        out.append({"target": f"full length: order 2 closes >= {FASHION_FULL_MIN_GAP_CLOSED:.0%} of the XNOR-FP gap",
                    "value": f"{closed:.0%}", "met": gap > 0 and closed >= FASHION_FULL_MIN_GAP_CLOSED})
    return out


def _options(model_args: dict | None) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in model_args.items())})" if model_args else ""


def _pct(mean: float, spread: float | None) -> str:
    return f"{mean * 100:.2f}" + (f" ± {spread * 100:.2f}" if spread is not None else "")


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        *report_header(result),
        f"Model `{s['model']}`{_options(s.get('model_args'))} on `{s['data']}`; {s['epochs']} epoch(s), Adam lr "
        f"{s['lr']} with cosine decay, "
        f"batch {s['batch_size']}, training images: {s['limit_train'] or 'all'}, test images: "
        f"{s['limit_test'] or 'all'}; seeds {s['seeds']}. Accuracy = last epoch's test accuracy"
        + ("; mean ± sample standard deviation over seeds." if len(s["seeds"]) > 1 else "."),
        "",
        "| order | test accuracy (%) | test error (%) | test loss | train time (s) | per seed (%) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["summary"]:
        order = None if r["order"] == "fp" else int(r["order"][1:])
        lines.append(f"| {order_label(order)} | {_pct(r['test_acc_mean'], r['test_acc_std'])} | "
                     f"{_pct(r['test_error_mean'], r['test_acc_std'])} | {r['test_loss_mean']:.4f} | "
                     f"{r['train_seconds_mean']:.1f} | {', '.join(f'{a * 100:.2f}' for a in r['test_acc'])} |")
    if result.get("targets"):
        lines += ["", 'Targets (docs/MATH.md "Reported results"; "full length": the project\'s, from '
                  f'{FULL_LENGTH_EPOCHS} epochs):', ""]
        lines += [f"- {t['target']}: {t['value']} — {'met' if t['met'] else 'NOT met'}" for t in result["targets"]]
    return "\n".join(lines).lstrip("\n")


def plot(result: dict, path: Path) -> None:
    """Test accuracy and test loss per epoch, one line per order (mean over seeds, band = min..max)."""
    plt = pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in result["summary"]:
        runs = [x for x in result["runs"] if x["order"] == r["order"]]
        epochs = [row["epoch"] for row in runs[0]["epochs"]]
        for ax, field, scale in ((ax_acc, "test_acc", 100.0), (ax_loss, "test_loss", 1.0)):
            per_seed = [[row[field] * scale for row in x["epochs"]] for x in runs]
            by_epoch = list(zip(*per_seed, strict=True))  # every seed ran the same epochs
            mean = [statistics.fmean(v) for v in by_epoch]
            order = None if r["order"] == "fp" else int(r["order"][1:])
            (line,) = ax.plot(epochs, mean, marker="o", label=order_label(order))
            if len(per_seed) > 1:
                ax.fill_between(epochs, [min(v) for v in by_epoch], [max(v) for v in by_epoch],
                                color=line.get_color(), alpha=0.2)
    s = result["settings"]
    for ax, name in ((ax_acc, "test accuracy (%)"), (ax_loss, "test loss")):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax_acc.legend(title="order")
    fig.suptitle(f"{s['model']} on {s['data']}: same recipe and seeds {s['seeds']} at every order")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
