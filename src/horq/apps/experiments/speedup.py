"""``horq analyze speedup``: docs/MATH.md's cost model next to measured native-conv speedups.

Cost model (docs/MATH.md "Cost model"): a binary dot product of length ``c * N_W`` costs about ``c N_W / 64``
word operations and each output adds ``K + 1`` non-binary ones (the K beta scalings and alpha), against
``c N_W`` multiply-adds of a float convolution:

    S_K = 64 c N_W / (K c N_W + 64 (K + 1)),   c = input channels, N_W = kh * kw

It grows with ``c`` and ``N_W`` (towards 64 / K), falls with ``K``, and does not depend on the spatial size.

Measurement: :func:`horq.kernels.conv2d` (packed weights prepared beforehand; the input quantization, betas
and residuals are timed, as a deployed layer pays them) against ``torch.nn.functional.conv2d`` in float32
(the faster of NCHW and channels_last), batch 1, ``C_out = C_in``, stride 1, no padding, input
``(out_size + k - 1)^2`` so every kernel size gives the same ``out_size^2`` output, one thread for both.
Times are medians after a warm-up, taken with :func:`horq.timing.median_and_best`.
"""

from __future__ import annotations

from pathlib import Path

from horq.apps.experiments.common import command_line, machine_info, pyplot, report_header, save_report, write_text
from horq.apps.summary import speedup
from horq.timing import median_and_best

WORD_BITS = 64
FULL = {"kernel_sizes": (1, 2, 3, 4, 5, 6, 7), "channels": (16, 32, 64, 128, 256, 512, 1024), "orders": (1, 2, 3, 4)}
QUICK = {"kernel_sizes": (1, 3, 5, 7), "channels": (16, 64, 256, 512), "orders": (1, 2, 3, 4)}
FULL_REPS = {"min_reps": 7, "min_seconds": 0.3}
QUICK_REPS = {"min_reps": 3, "min_seconds": 0.05}


def measure_conv(c: int, k: int, orders, *, out_size: int = 16, reps=None, seed: int = 0) -> dict:
    """Median seconds of the fp32 PyTorch conv and the native HORQ conv at each order, one thread each.

    Returns:
        ``{"fp32": s, "fp32_layout": "NCHW"|"channels_last", "horq": {order: s}}`` (medians) and ``fp32_best``,
        ``horq_best`` (fastest runs).
    """
    import numpy as np
    import torch

    from horq import kernels

    reps = reps or FULL_REPS
    rng = np.random.default_rng(seed)
    size = out_size + k - 1
    x = rng.standard_normal((1, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((c, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    pw = kernels.pack_weights(w)
    threads_before, torch_threads_before = kernels.get_num_threads(), torch.get_num_threads()
    kernels.set_num_threads(1)
    torch.set_num_threads(1)
    best = {}

    def timed(key, fn):
        t, best[key] = median_and_best(fn, **reps)  # fastest run: the least disturbed by other processes
        return t

    try:
        horq = {int(o): timed(int(o), lambda o=o: kernels.conv2d(x, pw, order=int(o))) for o in orders}
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        with torch.no_grad():
            nchw = timed("nchw", lambda: torch.nn.functional.conv2d(tx, tw))
            cx, cw = (t.contiguous(memory_format=torch.channels_last) for t in (tx, tw))
            cl = timed("cl", lambda: torch.nn.functional.conv2d(cx, cw))
    finally:
        kernels.set_num_threads(threads_before)
        torch.set_num_threads(torch_threads_before)
    return {"fp32": min(nchw, cl), "fp32_layout": "NCHW" if nchw <= cl else "channels_last", "horq": horq,
            "fp32_best": min(best["nchw"], best["cl"]), "horq_best": {int(o): best[int(o)] for o in orders}}


def run_speedup(*, out, quick: bool = False, kernel_sizes=None, channels=None, orders=None, out_size: int = 16,
                measure: bool = True, argv=None, progress: bool = True) -> dict:
    """The cost-model grid and (unless ``measure`` is False) the measured grid; writes JSON/markdown/PNGs."""
    grid = QUICK if quick else FULL
    kernel_sizes = tuple(kernel_sizes or grid["kernel_sizes"])
    channels = tuple(channels or grid["channels"])
    orders = tuple(orders or grid["orders"])
    if min(kernel_sizes) < 1 or min(channels) < 1 or min(orders) < 1 or out_size < 1:
        raise ValueError("kernel sizes, channels, orders and --out-size must be positive")
    rows = []
    for k in kernel_sizes:
        for c in channels:
            row = {"k": k, "c": c, "model": {o: speedup(o, c, k * k) for o in orders}}
            if measure:
                m = measure_conv(c, k, orders, out_size=out_size, reps=QUICK_REPS if quick else FULL_REPS)
                row.update(fp32_seconds=m["fp32"], fp32_layout=m["fp32_layout"], horq_seconds=m["horq"],
                           measured={o: m["fp32"] / m["horq"][o] for o in orders},
                           measured_best={o: m["fp32_best"] / m["horq_best"][o] for o in orders})
                if progress:
                    print(f"k={k} c={c}: fp32 {m['fp32'] * 1e3:.3f} ms, " + ", ".join(
                        f"K={o} {m['horq'][o] * 1e3:.3f} ms ({row['measured'][o]:.2f}x)" for o in orders), flush=True)
            rows.append(row)
    result = {
        "command": command_line(argv) if argv is not None else None,
        "machine": machine_info(),
        "settings": {"kernel_sizes": list(kernel_sizes), "channels": list(channels), "orders": list(orders),
                     "out_size": out_size, "batch": 1, "threads": 1, "quick": quick, "measured": measure,
                     "reps": (QUICK_REPS if quick else FULL_REPS) if measure else None},
        "rows": rows,
    }
    out = Path(out)
    save_report(out, "speedup", result, markdown)
    plot(result, out)  # two figures, named in plot()
    return result


def _get(d: dict, o):
    # JSON turns int keys into strings; accept both.
    return d[o] if o in d else d[str(o)]


def markdown(result: dict) -> str:
    s = result["settings"]
    orders = s["orders"]
    lines = [
        *report_header(result),
        f"Convolution k x k, C_in = C_out = c, output {s['out_size']}x{s['out_size']}, batch 1, 1 thread. "
        "Model: S_K = 64 c N_W / (K c N_W + 64 (K + 1)). Measured: PyTorch fp32 conv2d median time / native HORQ "
        "conv2d median time" + (f" (medians of at least {s['reps']['min_reps']} runs after a warm-up)." if s["measured"]
                                else " (not measured in this run)."),
        "",
    ]
    head = "| k | c | " + " | ".join(f"model K={o}" for o in orders)
    sep = "| ---: | ---: | " + " | ".join("---:" for _ in orders)
    if s["measured"]:
        head += " | " + " | ".join(f"measured K={o}" for o in orders) + " | fp32 ms (layout) | " + " | ".join(
            f"HORQ K={o} ms" for o in orders)
        sep += " | " + " | ".join("---:" for _ in orders) + " | ---: | " + " | ".join("---:" for _ in orders)
    lines += [head + " |", sep + " |"]
    for r in result["rows"]:
        line = f"| {r['k']} | {r['c']} | " + " | ".join(f"{_get(r['model'], o):.1f}" for o in orders)
        if s["measured"]:
            line += " | " + " | ".join(f"{_get(r['measured'], o):.2f}" for o in orders)
            line += f" | {r['fp32_seconds'] * 1e3:.3f} ({r['fp32_layout']}) | " + " | ".join(
                f"{_get(r['horq_seconds'], o) * 1e3:.3f}" for o in orders)
        lines.append(line + " |")
    if s["measured"]:
        lines += ["", "Summary (computed from the rows above):", ""] + [f"- {t}" for t in summary_lines(result)]
    if s["measured"] and all("measured_best" in r for r in result["rows"]):
        lines += ["", "Measured speedup from the fastest run of each measurement (the least disturbed by other "
                  "processes):", "", "| k | c | " + " | ".join(f"K={o}" for o in orders) + " |",
                  "| ---: | ---: | " + " | ".join("---:" for _ in orders) + " |"]
        lines += [f"| {r['k']} | {r['c']} | " + " | ".join(f"{_get(r['measured_best'], o):.2f}" for o in orders)
                  + " |" for r in result["rows"]]
    return "\n".join(lines).lstrip("\n")


def summary_lines(result: dict) -> list[str]:
    """Model-vs-measurement facts of a measured sweep, as sentences for the markdown."""
    import statistics

    rows, orders = result["rows"], result["settings"]["orders"]
    gap = [_get(r["model"], o) / _get(r["measured"], o) for r in rows for o in orders]
    out = [f"model / measured speedup (medians): from {min(gap):.1f}x to {max(gap):.1f}x over all shapes and orders"]
    for o in orders:
        faster = [r for r in rows if _get(r["measured"], o) > 1]
        small = [f"k={r['k']} c={r['c']}" for r in faster if r["c"] <= 64]
        out.append(f"K={o}: HORQ faster than fp32 (median) in {len(faster)} of {len(rows)} shapes"
                   + (f"; with c <= 64 only at {', '.join(small)}" if small else "; never with c <= 64"))
    if 1 in orders and 2 in orders:
        big = [r for r in rows if r["c"] >= 128]
        if big:
            meas = statistics.median(_get(r["measured"], 1) / _get(r["measured"], 2) for r in big)
            model = statistics.median(_get(r["model"], 1) / _get(r["model"], 2) for r in big)
            out.append(f"time ratio order 2 / order 1 over shapes with c >= 128: median {meas:.2f} measured vs "
                       f"{model:.2f} in the model")
    return out


def rebuild(out) -> dict:
    """Rewrites ``speedup.md`` and the PNGs of ``OUT`` from its ``speedup.json`` (no measurement)."""
    import json

    out = Path(out)
    result = json.loads((out / "speedup.json").read_text())
    write_text(out / "speedup.md", markdown(result))
    plot(result, out)
    return result


def plot(result: dict, out: Path) -> None:
    """``speedup_vs_channels.png`` and ``speedup_vs_kernel.png``: one panel per order, model dashed, measured solid."""
    plt = pyplot()
    s = result["settings"]
    orders = s["orders"]
    for name, xkey, lkey, _xs, ls, xlabel in (
        ("speedup_vs_channels.png", "c", "k", s["channels"], s["kernel_sizes"], "input channels c (= output)"),
        ("speedup_vs_kernel.png", "k", "c", s["kernel_sizes"], s["channels"], "kernel size k (N_W = k^2)"),
    ):
        fig, axes = plt.subplots(1, len(orders), figsize=(4.2 * len(orders), 4), sharey=True, squeeze=False)
        for ax, o in zip(axes[0], orders, strict=True):
            for lv in ls:
                pts = sorted((r[xkey], r) for r in result["rows"] if r[lkey] == lv)
                xv = [p[0] for p in pts]
                (line,) = ax.plot(xv, [_get(p[1]["model"], o) for p in pts], ls="--", alpha=0.7)
                if s["measured"]:
                    ax.plot(xv, [_get(p[1]["measured"], o) for p in pts], marker="o", color=line.get_color(),
                            label=f"{lkey}={lv}")
                else:
                    line.set_label(f"{lkey}={lv}")
            ax.set_xscale("log", base=2) if xkey == "c" else None
            ax.set_yscale("log", base=2)
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_title(f"order K={o}")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3, which="both")
        axes[0][0].set_ylabel("speedup over fp32 conv")
        axes[0][-1].legend(fontsize=7)
        fig.suptitle("dashed: cost model S_K; solid: measured fp32 / native HORQ time "
                     f"(batch 1, 1 thread, output {s['out_size']}x{s['out_size']})", fontsize=10)
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
