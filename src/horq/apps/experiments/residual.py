"""``horq analyze residual``: HORQ's error guarantee measured on the real inputs of a trained model.

For every binary layer (a ``HORQConv2d``/``HORQLinear`` with ``order`` not None) a forward pre-hook takes the
layer's real input during an eval-mode pass over test images, forms its columns exactly as docs/MATH.md defines
them (a linear layer: one sample's input vector; a convolution: one receptive field of the zero-padded input,
``n = C_in * kh * kw``), and measures for K = 1..max_order

* ``rel_error``: the mean over columns of ``||r_K|| / ||x||`` (columns with ``x = 0`` skipped: nothing to
  approximate), and
* ``rel_error_pooled``: ``sqrt(sum ||r_K||^2 / sum ||x||^2)`` over all columns,

where ``r_K = x - residual_approx(x, K)`` uses the project's quantizer (:func:`horq.nn.quant.residual_approx`).
A model without binary layers (a full-precision checkpoint) is analysed at the layers ``HORQConfig``'s default
would binarize (every Conv2d/Linear but the first and the last). A reference row gives the same numbers for
standard Gaussian columns of each layer's length (docs/MATH.md "The error identity": relative squared error
about 0.36, 0.13, 0.058,
0.033 for K = 1..4).
"""

from __future__ import annotations

import math
from pathlib import Path

from horq.apps.experiments.common import command_line, machine_info, pyplot, report_header, save_report

GAUSSIAN_COLUMNS = 2048  # columns of the Gaussian reference per layer length


def _columns(layer, x):
    """The layer's input as rows of docs/MATH.md columns: ``(num_columns, n)``."""
    import torch.nn.functional as F
    from torch import nn

    if isinstance(layer, nn.Conv2d):
        if x.dim() == 3:
            x = x.unsqueeze(0)
        pads = layer._reversed_padding_repeated_twice
        xp = F.pad(x, pads) if any(pads) else x
        cols = F.unfold(xp, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (N, n, P)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, layer.in_features)


class _Accumulator:
    """Running sums of ``||x||^2``, ``||r_K||^2`` and ``||r_K|| / ||x||`` over the columns of one layer."""

    def __init__(self, max_order: int):
        self.max_order = max_order
        self.columns = 0
        self.x_sq = 0.0
        self.r_sq = [0.0] * max_order
        self.ratio_sum = [0.0] * max_order
        self.n = None

    def add(self, cols) -> None:
        import torch

        from horq.nn.quant import residual_approx

        cols = cols.detach().to(torch.float64)
        self.n = cols.shape[1]
        x_norm = cols.norm(dim=1)
        keep = x_norm > 0
        cols, x_norm = cols[keep], x_norm[keep]
        self.columns += int(cols.shape[0])
        self.x_sq += float((x_norm**2).sum())
        for k in range(1, self.max_order + 1):
            r = cols - residual_approx(cols, k, dim=1, clip=None)
            r_norm = r.norm(dim=1)
            self.r_sq[k - 1] += float((r_norm**2).sum())
            self.ratio_sum[k - 1] += float((r_norm / x_norm).sum())

    def result(self) -> dict:
        c = max(self.columns, 1)
        return {
            "n": self.n, "columns": self.columns,
            "rel_error": [s / c for s in self.ratio_sum],
            "rel_error_pooled": [math.sqrt(s / self.x_sq) if self.x_sq > 0 else 0.0 for s in self.r_sq],
        }


def _target_layers(model):
    """(name, module, order) of the binary layers, or of the layers the default config would binarize."""
    from torch import nn

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    binary = [(n, m, m.order) for n, m in layers if getattr(m, "order", None) is not None]
    if binary:
        return binary, "binary layers of the checkpoint"
    return [(n, m, None) for n, m in layers[1:-1]], "full-precision checkpoint: the layers HORQConfig would binarize"


def residual_errors(model, x, *, max_order: int = 4, batch_size: int = 128) -> tuple[list[dict], str]:
    """Feeds ``x`` (a float tensor, standardized) through ``model`` in eval mode and measures every target layer.

    Returns:
        ``(layers, which)``: one dict per layer (``name``, ``type``, ``order``, ``n``, ``columns``,
        ``rel_error``, ``rel_error_pooled``; lists indexed K - 1) and a note saying which layers were taken.
    """
    import torch

    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    targets, which = _target_layers(model)
    if not targets:
        raise ValueError("the model has no Conv2d/Linear layer that is or would be binarized")
    accs = {name: _Accumulator(max_order) for name, _, _ in targets}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=name: accs[name].add(_columns(mod, inp[0])))
             for name, m, _ in targets]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows = []
    for name, m, order in targets:
        rows.append({"name": name, "type": type(m).__name__, "order": order, **accs[name].result()})
    return rows, which


def gaussian_reference(n: int, max_order: int, *, seed: int = 0) -> list[float]:
    """Mean ``||r_K|| / ||x||`` of standard Gaussian columns of length ``n`` (K = 1..max_order)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    acc = _Accumulator(max_order)
    acc.add(torch.randn(GAUSSIAN_COLUMNS, n, generator=gen, dtype=torch.float64))
    return acc.result()["rel_error"]


def run_residual(checkpoint, *, out, data: str | None = None, data_root: str | None = None, limit: int = 256,
                 max_order: int = 4, argv=None) -> dict:
    """Loads a checkpoint, measures :func:`residual_errors` on ``limit`` test images, writes JSON/markdown/PNG."""
    import torch

    from horq.data import load
    from horq.nn.checkpoint import load_model

    model, ckpt = load_model(checkpoint)
    args = ckpt.get("args") or {}
    data = data or args.get("data")
    if data is None:
        raise ValueError("the checkpoint does not name its dataset; pass --data")
    ds = load(data, "test", root=data_root if data_root is not None else args.get("data_root"))
    x = torch.from_numpy(ds.x[:limit].copy())
    layers, which = residual_errors(model, x, max_order=max_order)
    for row in layers:
        row["gaussian_rel_error"] = gaussian_reference(row["n"], max_order)
    result = {
        "command": command_line(argv) if argv is not None else None,
        "machine": machine_info(),
        "checkpoint": str(checkpoint),
        "model": ckpt.get("model_name"),
        "trained_order": ckpt.get("config", {}).get("order") if ckpt.get("config") else None,
        "data": data, "images": int(len(x)), "max_order": max_order, "layers_taken": which,
        "layers": layers,
    }
    out = Path(out)
    save_report(out, "residual", result, markdown, plot)
    return result


def markdown(result: dict) -> str:
    ks = range(1, result["max_order"] + 1)
    lines = [
        *report_header(result),
        f"Checkpoint `{result['checkpoint']}` ({result['model']}, trained at order {result['trained_order']}); "
        f"{result['images']} `{result['data']}` test images; {result['layers_taken']}. Mean over columns of "
        "||r_K|| / ||x|| (pooled sqrt(sum ||r_K||^2 / sum ||x||^2) in brackets); Gaussian = the same for "
        "standard normal columns of the same length.",
        "",
        "| layer | type | n | columns | " + " | ".join(f"K={k}" for k in ks) + " |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in ks) + " |",
    ]
    for r in result["layers"]:
        vals = " | ".join(f"{a:.4f} ({b:.4f})" for a, b in zip(r["rel_error"], r["rel_error_pooled"], strict=True))
        gauss = " | ".join(f"{g:.4f}" for g in r["gaussian_rel_error"])
        lines.append(f"| {r['name']} | {r['type']} | {r['n']} | {r['columns']} | {vals} |")
        lines.append(f"| (Gaussian, n={r['n']}) | | | | {gauss} |")
    return "\n".join(lines).lstrip("\n")


def plot(result: dict, path: Path) -> None:
    """Relative residual error against K, one line per layer (log scale), Gaussian reference dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ks = list(range(1, result["max_order"] + 1))
    for r in result["layers"]:
        (line,) = ax.plot(ks, r["rel_error"], marker="o", label=f"{r['name']} ({r['type']}, n={r['n']})")
        ax.plot(ks, r["gaussian_rel_error"], ls="--", color=line.get_color(), alpha=0.6)
    ax.set_yscale("log")
    ax.set_xticks(ks)
    ax.set_xlabel("order K")
    ax.set_ylabel("mean ||r_K|| / ||x|| over input columns")
    ax.set_title(f"{result['model']} (trained at order {result['trained_order']}) on {result['data']}\n"
                 "solid: measured, dashed: Gaussian columns of the same length", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
