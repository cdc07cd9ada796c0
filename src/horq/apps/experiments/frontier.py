"""``horq analyze frontier``: which order to pay for, and where -- the accuracy-latency trade-off of per-layer orders.

For a trained checkpoint:

1. **Held-out split.** ``holdout`` samples of the dataset's *training* split, a fixed seeded subset
   (:func:`horq.data.holdout_indices`). The test split is never loaded. A checkpoint trained with
   ``horq train --holdout K`` (K >= ``holdout``) has never seen them; otherwise they were trained on, and the
   report says so.
2. **Sensitivity.** With every binary layer (order >= 1 in the checkpoint) at its trained order, one layer at a
   time moves to each order in ``orders``; held-out accuracy in PyTorch, eval mode (batch-norm statistics as
   trained). Full-precision layers (by default the first and last) stay as the checkpoint has them.
3. **Latency per layer and order.** The model is exported at each uniform order and loaded on the native
   runtime; the runtime's per-node profiler (``Model.profile``) times every step of its plan and a whole call
   at batch 1, 1 thread, in short bursts taken round-robin over the models (the machine is shared, so load
   drift hits every order alike); medians of the bursts' medians. A binary step's time covers its input
   quantization, the XNOR-popcount product and its fused epilogue.
4. **Additive latency model.** ``latency(orders) = fixed + sum over binary layers of t_layer(order)``, where
   ``fixed`` is what a whole call costs beyond its binary steps: the median of whole calls (timed in the same
   rounds) minus the binary steps' medians, averaged over the uniform models; it holds the float layers,
   pooling, activations and the runtime's own per-call work (input checks). Each frontier point and the
   uniform configurations are then exported and timed as whole models to check the model (``additive_check``
   in the JSON).
5. **Search.** Every assignment of ``orders`` to the binary layers when there are at most ``max_candidates`` of
   them (mnist-cnn: 3 layers, 27 assignments), each one's held-out accuracy measured directly (one forward pass
   over the held-out split); otherwise a greedy descent from the highest order that lowers, at each step, the
   layer costing the least held-out accuracy per millisecond saved (each step measured directly too).
6. **Frontier.** Candidates no other candidate beats on both held-out accuracy and predicted latency. The
   chosen point is the fastest frontier point within ``max_drop`` percentage points of the checkpoint's own
   held-out accuracy. Every frontier point's orders are written as ``HORQConfig.to_dict()`` JSON, which
   ``HORQConfig.from_dict`` and ``horq train --orders FILE`` read.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from horq.apps.experiments.common import command_line, machine_info, pyplot, report_header, save_report, write_json

DEFAULT_ORDERS = (1, 2, 3)
DEFAULT_HOLDOUT = 1000
#: Exhaustive search up to this many assignments; greedy beyond.
DEFAULT_MAX_CANDIDATES = 729
#: Timing rounds of the per-step profile (each round runs every uniform-order model once).
DEFAULT_ROUNDS = 300


def load_holdout(data: str, *, holdout: int, data_root=None):
    """The held-out samples of ``data``'s training split: ``(x, y, info)`` (numpy arrays, info dict).

    Raises:
        ValueError: ``holdout`` is not smaller than the training split.
    """
    from horq.data import holdout_indices, load

    ds = load(data, "train", root=data_root)
    n = len(ds.y)
    if not 0 < holdout < n:
        raise ValueError(f"--holdout must be between 1 and {n - 1} (the {data} training split has {n} samples), "
                         f"got {holdout}")
    idx = holdout_indices(n, holdout)
    info = {"data": data, "split": "train", "samples": holdout, "train_size": n,
            "definition": "horq.data.holdout_indices(train_size, samples)"}
    return ds.x[idx], ds.y[idx], info


def binary_layers(model) -> list[tuple[str, object]]:
    """``(name, module)`` of the HORQ layers of order >= 1, in registration order."""
    from horq.nn.layers import HORQConv2d, HORQLinear

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (HORQConv2d, HORQLinear)) and m.order is not None and m.order >= 1]


def _set_orders(layers, assignment: dict) -> None:
    for name, m in layers:
        m.order = assignment[name]


def _accuracy(model, x, y) -> float:
    from horq.nn.training import evaluate

    return evaluate(model, x, y, batch_size=500)[1]


def sensitivity(model, layers, trained: dict, orders, x, y) -> dict:
    """``{layer: {order: held-out accuracy}}`` with the other layers at their trained orders."""
    out = {}
    for name, _ in layers:
        out[name] = {}
        for k in orders:
            _set_orders(layers, {**trained, name: k})
            out[name][k] = _accuracy(model, x, y)
    _set_orders(layers, trained)
    return out


# ---- latency ------------------------------------------------------------------------------------------------

def _export_runtime(model, input_shape, path: Path):
    import horq
    import horq.runtime

    horq.export(model, path, input_shape=input_shape)
    rt = horq.runtime.load(path, backend="native")
    return rt


#: Profiler runs per burst (each burst gives one median per step; bursts alternate between models).
BURST = 10


def layer_latencies(model, layers, orders, *, input_shape, x1, rounds: int, workdir: Path) -> dict:
    """Per-layer latency at each order and the fixed cost, from the native runtime (batch 1, 1 thread).

    Returns:
        ``{"layer_ms": {layer: {order: ms}}, "fixed_ms": ms, "fixed_ms_per_order": {order: ms},
        "other_steps_ms_per_order": {order: ms}, "whole_ms_per_order": {order: ms}}``.
    """
    import horq.runtime

    names = [n for n, _ in layers]
    trained = {n: m.order for n, m in layers}
    models = {}
    for k in orders:
        _set_orders(layers, {n: k for n in names})
        models[k] = _export_runtime(model, input_shape, workdir / f"uniform-o{k}.horq")
    _set_orders(layers, trained)
    samples, whole = {k: [] for k in orders}, {k: [] for k in orders}
    with horq.runtime.num_threads(1):
        for k in orders:
            models[k].profile(x1, repeats=1, warmup=2)  # builds weight layouts
        for _ in range(max(1, rounds // BURST)):
            for k in orders:
                prof = models[k].profile(x1, repeats=BURST, warmup=0)
                # A binary layer's step may carry a following step's name (the runtime fused a relu or a
                # residual add into it); the layer's time is that step's, keyed by the layer.
                samples[k].append({_layer_of(node, names): node.ms for node in prof.nodes})
                whole[k].append(prof.call_ms)
    missing = [n for n in names if n not in samples[orders[0]][0]]
    if missing:
        raise ValueError(f"binary layers {missing} have no step of their own in the exported model")
    layer_ms, fixed, other, whole_ms = {n: {} for n in names}, {}, {}, {}
    for k in orders:
        steps = samples[k][0].keys()
        med = {s: statistics.median(r[s] for r in samples[k]) for s in steps}
        for n in names:
            layer_ms[n][k] = med[n]
        other[k] = sum(v for s, v in med.items() if s not in names)
        whole_ms[k] = statistics.median(whole[k])
        fixed[k] = whole_ms[k] - sum(layer_ms[n][k] for n in names)
    return {"layer_ms": layer_ms, "fixed_ms": statistics.mean(fixed.values()), "fixed_ms_per_order": fixed,
            "other_steps_ms_per_order": other, "whole_ms_per_order": whole_ms}


def _layer_of(node, names) -> str:
    """The binary layer a profiled step computes (its own name or one it fused), else the step's name."""
    own = [n for n in (node.name, *node.fused) if n in names]
    return own[0] if len(own) == 1 else node.name


def predicted_ms(assignment: dict, lat: dict) -> float:
    """The additive model: fixed cost plus each binary layer's latency at its order."""
    return lat["fixed_ms"] + sum(lat["layer_ms"][n][k] for n, k in assignment.items())


def measure_whole(model, layers, assignments: list[dict], *, input_shape, x1, min_seconds: float,
                  workdir: Path) -> list[float]:
    """Median batch-1, 1-thread latency (ms) of each assignment's whole exported model, timed round-robin."""
    import horq.runtime
    from horq.timing import interleaved_times

    trained = {n: m.order for n, m in layers}
    fns = {}
    for i, a in enumerate(assignments):
        _set_orders(layers, a)
        rt = _export_runtime(model, input_shape, workdir / f"candidate-{i}.horq")
        fns[i] = (lambda rt=rt: rt(x1))
    _set_orders(layers, trained)
    with horq.runtime.num_threads(1):
        times = interleaved_times(fns, min_reps=20, min_seconds=min_seconds, max_reps=2000)
    return [1e3 * times[i][0] for i in range(len(assignments))]


# ---- search -------------------------------------------------------------------------------------------------

def search(model, layers, orders, lat: dict, x, y, *, max_candidates: int) -> tuple[list[dict], str]:
    """Candidates ``{"orders", "holdout_acc", "predicted_ms"}``: exhaustive when small enough, else greedy."""
    names = [n for n, _ in layers]
    trained = {n: m.order for n, m in layers}
    seen: dict[tuple, dict] = {}

    def measure(assignment: dict) -> dict:
        key = tuple(assignment[n] for n in names)
        if key not in seen:
            _set_orders(layers, assignment)
            seen[key] = {"orders": dict(assignment), "holdout_acc": _accuracy(model, x, y),
                         "predicted_ms": predicted_ms(assignment, lat)}
        return seen[key]

    try:
        if len(orders) ** len(names) <= max_candidates:
            for combo in itertools.product(orders, repeat=len(names)):
                measure(dict(zip(names, combo, strict=True)))
            how = f"exhaustive: all {len(orders)}^{len(names)} = {len(seen)} assignments"
        else:
            ladder = sorted(orders)
            current = {n: ladder[-1] for n in names}
            measure(current)
            while any(current[n] != ladder[0] for n in names):
                base = measure(current)
                best, best_score = None, None
                for n in names:
                    i = ladder.index(current[n])
                    if i == 0:
                        continue
                    c = measure({**current, n: ladder[i - 1]})
                    saved = max(base["predicted_ms"] - c["predicted_ms"], 1e-9)
                    score = (base["holdout_acc"] - c["holdout_acc"]) / saved
                    if best_score is None or score < best_score:
                        best, best_score = c, score
                current = dict(best["orders"])
            how = (f"greedy from order {ladder[-1]} everywhere, lowering the layer that costs the least held-out "
                   f"accuracy per ms saved ({len(seen)} assignments measured; exhaustive would be "
                   f"{len(orders) ** len(names)})")
    finally:
        _set_orders(layers, trained)
    return list(seen.values()), how


def pareto(candidates: list[dict]) -> list[dict]:
    """Candidates that no other beats on both accuracy and latency, fastest first."""
    front, best = [], -1.0
    for c in sorted(candidates, key=lambda c: (c["predicted_ms"], -c["holdout_acc"])):
        if c["holdout_acc"] > best:
            front.append(c)
            best = c["holdout_acc"]
    return front


def overrides_config(config: dict, orders: dict) -> dict:
    """The checkpoint's HORQConfig dict with ``orders`` as per-layer overrides (``HORQConfig.from_dict`` reads it)."""
    from horq.nn.convert import HORQConfig

    cfg = HORQConfig.from_dict(config)
    cfg.overrides = {**cfg.overrides, **orders}
    return cfg.to_dict()


# ---- the command --------------------------------------------------------------------------------------------

def run_frontier(checkpoint, *, out, data=None, data_root=None, holdout: int = DEFAULT_HOLDOUT,
                 orders=DEFAULT_ORDERS, max_drop: float = 0.5, max_candidates: int = DEFAULT_MAX_CANDIDATES,
                 rounds: int = DEFAULT_ROUNDS, min_seconds: float = 1.0, argv=None) -> dict:
    """Sensitivity, per-layer latency, search and frontier of a checkpoint; writes JSON, markdown, PNG and the
    frontier points' orders (module docstring). Returns the result dict."""
    orders = sorted(set(orders))
    if not orders or orders[0] < 1:
        raise ValueError(f"--orders must be integers >= 1 (the native kernels' orders), got {orders}")
    setup = _frontier_setup(checkpoint, data, data_root, holdout)
    t0 = time.perf_counter()
    found = _explore(setup, orders, max_candidates=max_candidates, rounds=rounds, min_seconds=min_seconds)
    eligible = [c for c in found["front"] if c["holdout_acc"] >= found["base_acc"] - max_drop / 100]
    chosen = eligible[0] if eligible else found["front"][-1]
    out = Path(out)
    ckpt = setup["ckpt"]
    (out / "orders").mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(found["front"]):
        c["file"] = f"orders/frontier-{i}.json"
        write_json(out / c["file"], overrides_config(ckpt["config"], c["orders"]))
    write_json(out / "chosen.json", overrides_config(ckpt["config"], chosen["orders"]))
    result = _frontier_result(setup, found, orders, chosen, max_drop, rounds, argv)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    save_report(out, "frontier", result, markdown, plot)
    return result


def _frontier_setup(checkpoint, data, data_root, holdout: int) -> dict:
    """The checkpoint's model, its binary layers and the held-out split to measure on (ValueError when the
    checkpoint has nothing to choose or no dataset)."""
    import torch

    from horq.nn.checkpoint import load_model

    model, ckpt = load_model(checkpoint)
    if ckpt.get("config") is None:
        raise ValueError(f"{checkpoint} is a full-precision model: train or fine-tune it at an order first "
                         "(horq train --order 2 --init-from ...)")
    layers = binary_layers(model)
    if not layers:
        raise ValueError(f"{checkpoint} has no binary layer of order >= 1 to choose orders for")
    args = ckpt.get("args") or {}
    data = data or args.get("data")
    if data is None:
        raise ValueError(f"{checkpoint} does not record its dataset; name it with --data")
    hx, hy, split = load_holdout(data, holdout=holdout, data_root=data_root or args.get("data_root"))
    seen_by_training = args.get("data") == data and (args.get("holdout") or 0) < holdout
    if seen_by_training:
        print(f"warning: {checkpoint} was trained on the {holdout} held-out samples of the {data} training split; "
              f"train with --holdout {holdout} to keep them unseen", file=sys.stderr)
    return {"checkpoint": checkpoint, "model": model, "ckpt": ckpt, "layers": layers,
            "x": torch.from_numpy(hx.copy()), "y": torch.from_numpy(hy.copy()), "x1": hx[:1].copy(),
            "input_shape": tuple(int(d) for d in ckpt["model_kwargs"]["in_shape"]),
            "split": split, "seen_by_training": seen_by_training, "trained_holdout": args.get("holdout"),
            "trained": {n: m.order for n, m in layers}}


def _explore(setup: dict, orders, *, max_candidates: int, rounds: int, min_seconds: float) -> dict:
    """Sensitivity, per-layer latencies, the search, its Pareto frontier, and the whole-model times of the
    frontier and uniform-order points."""
    model, layers, x, y = setup["model"], setup["layers"], setup["x"], setup["y"]
    base_acc = _accuracy(model, x, y)
    sens = sensitivity(model, layers, setup["trained"], orders, x, y)
    with tempfile.TemporaryDirectory() as tmp:
        lat = layer_latencies(model, layers, orders, input_shape=setup["input_shape"], x1=setup["x1"],
                              rounds=rounds, workdir=Path(tmp))
        candidates, how = search(model, layers, orders, lat, x, y, max_candidates=max_candidates)
        front = pareto(candidates)
        uniform = [next(c for c in candidates if set(c["orders"].values()) == {k}) for k in orders
                   if any(set(c["orders"].values()) == {k} for c in candidates)]
        checked = front + [u for u in uniform if u not in front]
        measured = measure_whole(model, layers, [c["orders"] for c in checked], input_shape=setup["input_shape"],
                                 x1=setup["x1"], min_seconds=min_seconds, workdir=Path(tmp))
    for c, ms in zip(checked, measured, strict=True):
        c["measured_ms"] = ms
    return {"base_acc": base_acc, "sens": sens, "lat": lat, "candidates": candidates, "how": how,
            "front": front, "checked": checked}


def _frontier_result(setup: dict, found: dict, orders, chosen: dict, max_drop: float, rounds: int, argv) -> dict:
    """The JSON document of a frontier run (string keys for the orders)."""
    ckpt, lat = setup["ckpt"], found["lat"]

    def keyed(d):
        return {str(k): v for k, v in d.items()}

    return {
        "command": command_line(argv) if argv is not None else None,
        "machine": machine_info(),
        "checkpoint": str(setup["checkpoint"]), "model": ckpt.get("model_name"), "config": ckpt["config"],
        "holdout": {**setup["split"], "seen_in_training": setup["seen_by_training"],
                    "checkpoint_holdout": setup["trained_holdout"]},
        "orders": orders, "layers": list(setup["trained"]), "trained_orders": setup["trained"],
        "holdout_acc_as_trained": found["base_acc"],
        "sensitivity": {n: keyed(d) for n, d in found["sens"].items()},
        "latency": {"layer_ms": {n: keyed(d) for n, d in lat["layer_ms"].items()},
                    "fixed_ms": lat["fixed_ms"],
                    "fixed_ms_per_order": keyed(lat["fixed_ms_per_order"]),
                    "other_steps_ms_per_order": keyed(lat["other_steps_ms_per_order"]),
                    "whole_ms_per_order": keyed(lat["whole_ms_per_order"]),
                    "batch": 1, "threads": 1, "rounds": max(1, rounds // BURST) * BURST, "burst": BURST},
        "search": found["how"], "candidates": found["candidates"], "frontier": found["front"],
        "chosen": {**chosen, "file": "chosen.json", "max_drop_points": max_drop},
        "additive_check": [{"orders": c["orders"], "predicted_ms": c["predicted_ms"],
                            "measured_ms": c["measured_ms"]} for c in found["checked"]],
    }


def _orders_text(orders: dict) -> str:
    return " ".join(str(k) for k in orders.values())


def markdown(result: dict) -> str:
    names, orders = result["layers"], result["orders"]
    h = result["holdout"]
    lat = result["latency"]
    lines = [
        *report_header(result),
        f"Checkpoint `{result['checkpoint']}` ({result['model']}, trained orders "
        f"{_orders_text(result['trained_orders'])} for layers {', '.join(names)}). Held-out split: "
        f"`{h['definition']}` of the `{h['data']}` training split ({h['samples']} of {h['train_size']} samples; "
        + ("**seen in training**" if h["seen_in_training"] else "never trained on") + "); the test split is not "
        f"used. Held-out accuracy as trained: {100 * result['holdout_acc_as_trained']:.2f}%.",
        "",
        "Sensitivity: held-out accuracy (%) with one layer at order K, the others as trained.",
        "",
        "| layer | " + " | ".join(f"K={k}" for k in orders) + " |",
        "| --- | " + " | ".join("---:" for _ in orders) + " |",
    ]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{100 * result['sensitivity'][n][str(k)]:.2f}" for k in orders) + " |")
    lines += [
        "",
        f"Latency per binary layer (ms; native runtime's profiler, batch 1, 1 thread, {lat['rounds']} runs in "
        f"bursts of {lat.get('burst', BURST)}, median of the bursts' medians); "
        f"fixed cost {lat['fixed_ms']:.3f} ms (a whole call minus its binary layers, mean over the uniform models; "
        "the other steps alone: "
        + ", ".join(f"{v:.3f}" for v in lat["other_steps_ms_per_order"].values()) + " ms).",
        "",
        "| layer | " + " | ".join(f"K={k}" for k in orders) + " |",
        "| --- | " + " | ".join("---:" for _ in orders) + " |",
    ]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{lat['layer_ms'][n][str(k)]:.3f}" for k in orders) + " |")
    lines += [
        "",
        f"Search: {result['search']}. Frontier (orders per layer in the order {', '.join(names)}; predicted = "
        "fixed + sum of layer latencies, measured = the whole exported model):",
        "",
        "| orders | held-out acc (%) | predicted ms | measured ms | file |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for c in result["frontier"]:
        mark = " (chosen)" if c["orders"] == result["chosen"]["orders"] else ""
        lines.append(f"| {_orders_text(c['orders'])}{mark} | {100 * c['holdout_acc']:.2f} | {c['predicted_ms']:.3f} "
                     f"| {c.get('measured_ms', float('nan')):.3f} | `{c['file']}` |")
    lines += ["", "Additive model check (whole exported models):", "",
              "| orders | predicted ms | measured ms | error |", "| --- | ---: | ---: | ---: |"]
    for c in result["additive_check"]:
        err = (c["predicted_ms"] - c["measured_ms"]) / c["measured_ms"]
        lines.append(f"| {_orders_text(c['orders'])} | {c['predicted_ms']:.3f} | {c['measured_ms']:.3f} | "
                     f"{100 * err:+.1f}% |")
    ch = result["chosen"]
    lines += ["", f"Chosen (fastest frontier point within {ch['max_drop_points']} points of the held-out accuracy "
              f"as trained): orders {_orders_text(ch['orders'])}, `{ch['file']}`."]
    return "\n".join(lines).lstrip("\n")


def plot(result: dict, path: Path) -> None:
    """Held-out accuracy against latency: every candidate, the frontier, uniform orders, the chosen point."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    cands, front = result["candidates"], result["frontier"]
    ax.scatter([c["predicted_ms"] for c in cands], [100 * c["holdout_acc"] for c in cands], s=14, color="0.65",
               label="candidates (predicted latency)")
    ax.step([c["predicted_ms"] for c in front], [100 * c["holdout_acc"] for c in front], where="post",
            color="C0", marker="o", label="Pareto frontier (predicted)")
    meas = [c for c in front if "measured_ms" in c]
    ax.scatter([c["measured_ms"] for c in meas], [100 * c["holdout_acc"] for c in meas], marker="x", color="C3",
               label="frontier, whole model measured")
    for c in cands:
        ks = set(c["orders"].values())
        if len(ks) == 1:
            ax.annotate(f"uniform {ks.pop()}", (c["predicted_ms"], 100 * c["holdout_acc"]), fontsize=8,
                        xytext=(4, -10), textcoords="offset points")
    ch = result["chosen"]
    ax.scatter([ch["predicted_ms"]], [100 * ch["holdout_acc"]], marker="*", s=160, color="C2", zorder=5,
               label="chosen")
    ax.set_xlabel("latency (ms, batch 1, 1 thread, native runtime)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"{result['model']}: per-layer orders ({', '.join(result['layers'])})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
