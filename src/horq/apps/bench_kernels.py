"""``horq bench kernels``: benchmark of the native HORQ kernels (not a test).

    horq bench kernels                                      # prints the tables
    horq bench kernels --doc docs/KERNELS.md --json docs/kernels_bench.json   # also rewrites the results
    horq bench kernels --doc docs/KERNELS.md --section bench-avx512 --json ...  # another section of the doc
    horq bench kernels --quick                              # fewer repeats
    .venv/bin/python benchmarks/bench_kernels.py            # the repository's run: writes those two files

Measures, at 1 and 2 threads, the median (and fastest) of repeated runs after a warm-up:
* bgemm binary MAC/s (M x K bits x N) on every kernel path this CPU runs;
* HORQ convolutions (orders 1-3, best path; a ``Conv2dLayer`` prepared once, as the runtime prepares a network's
  layers at load: ``kernels.conv2d`` would add its per-call checks and weight preparation, tens of microseconds)
  against PyTorch fp32 conv2d (best of NCHW and channels_last) and PyTorch's int8 quantized conv (x86 engine),
  batch 1, 3x3, stride 1, padding 1, C_out = C_in. The contenders of one shape are timed round-robin, so they see
  the same load on a shared machine; then HORQ's orders again without PyTorch between (its thread scaling).
The load average (os.getloadavg) before and after the run is recorded with the results. PyTorch is
optional: without it only the HORQ columns are filled.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from horq import kernels
from horq.apps.summary import speedup
from horq.fileio import check_marked_section, replace_marked_section
from horq.timing import interleaved_times, median_and_best

BGEMM_SIZES = [(64, 576, 1024), (256, 2304, 1024), (512, 4608, 196), (1024, 4096, 1024)]
CONV_SHAPES = {"S1": (64, 32), "S2": (128, 16), "S3": (256, 8), "S4": (256, 32), "S5": (512, 14)}  # (C, H=W)
ORDERS = (1, 2, 3)
THREADS = (1, 2)
DOC_SECTION = "bench"  # the generated part of the document: between <!-- bench:begin --> and <!-- bench:end -->


def bench_bgemm(paths, reps):
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in BGEMM_SIZES:
        a = rng.integers(0, 2**63, (m, k // 64), dtype=np.uint64)
        b = rng.integers(0, 2**63, (n, k // 64), dtype=np.uint64)
        for path in paths:
            for t in THREADS:
                kernels.set_num_threads(t)
                sec, best = median_and_best(partial(kernels.bgemm, a, b, k, kernel=path), **reps)
                rows.append({"M": m, "K": k, "N": n, "path": path, "threads": t, "seconds": sec,
                             "gmacs": m * k * n / sec / 1e9, "gmacs_best": m * k * n / best / 1e9})
                print(f"bgemm {m}x{k}x{n} {path} t={t}: {rows[-1]['gmacs']:.1f} G binary MAC/s", flush=True)
    return rows


def torch_setup():
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    int8_note = None
    try:
        if "x86" not in torch.backends.quantized.supported_engines:
            int8_note = f"x86 quantized engine unavailable (engines: {torch.backends.quantized.supported_engines})"
        else:
            torch.backends.quantized.engine = "x86"
    except Exception as exc:  # noqa: BLE001 - report whatever went wrong
        int8_note = f"quantized engine unavailable: {exc}"
    return torch, int8_note


def bench_conv(path, reps):
    torch, int8_note = torch_setup()
    rng = np.random.default_rng(1)
    rows = []
    for name, (c, hw) in CONV_SHAPES.items():
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
        pw = kernels.pack_weights(w)
        for t in THREADS:
            kernels.set_num_threads(t)
            row = {"shape": name, "C": c, "HW": hw, "threads": t, "path": path}
            fns = {f"horq{order}": partial(kernels.Conv2dLayer(pw, order=order, padding=1, kernel=path), x)
                   for order in ORDERS}
            if torch is not None:
                torch.set_num_threads(t)
                tx, tw = torch.from_numpy(x), torch.from_numpy(w)
                cx, cw = tx.contiguous(memory_format=torch.channels_last), tw.contiguous(
                    memory_format=torch.channels_last)
                fns["nchw"] = partial(torch.nn.functional.conv2d, tx, tw, padding=1)
                fns["cl"] = partial(torch.nn.functional.conv2d, cx, cw, padding=1)
                if int8_note is None:
                    try:
                        fns["int8"] = int8_conv(torch, tx, tw)
                    except Exception as exc:  # noqa: BLE001
                        int8_note = f"int8 conv failed: {exc}"
            if torch is not None:
                with torch.no_grad():
                    res = interleaved_times(fns, **reps)
            else:
                res = interleaved_times(fns, **reps)
            for order in ORDERS:
                row[f"horq{order}"], row[f"horq{order}_best"] = res[f"horq{order}"]
            # HORQ alone: its orders round-robin with no PyTorch call between (after each of its calls PyTorch's idle
            # threads keep the other core busy for a while, which a 2-thread HORQ call then shares)
            alone = interleaved_times({k: v for k, v in fns.items() if k.startswith("horq")}, **reps)
            for order in ORDERS:
                row[f"alone{order}"], row[f"alone{order}_best"] = alone[f"horq{order}"]
            if torch is not None:
                (nchw, nchw_best), (cl, cl_best) = res["nchw"], res["cl"]
                row["fp32"], row["fp32_layout"] = min(nchw, cl), "NCHW" if nchw <= cl else "channels_last"
                row["fp32_best"] = min(nchw_best, cl_best)
                if "int8" in res:
                    row["int8"], row["int8_best"] = res["int8"]
            rows.append(row)
            print(f"conv {name} t={t}: " + ", ".join(f"{k}={v * 1e3:.3f}ms" for k, v in row.items()
                                                    if isinstance(v, float) and not k.endswith("_best")), flush=True)
    return rows, int8_note


def int8_conv(torch, tx, tw):
    """A call running PyTorch's int8 quantized conv (x86 engine) on a pre-quantized input."""
    from torch.ao.nn.quantized import Conv2d as QConv2d

    c = tw.shape[0]
    qconv = QConv2d(c, c, 3, padding=1)
    qw = torch.quantize_per_channel(tw, tw.abs().amax(dim=(1, 2, 3)) / 127, torch.zeros(c, dtype=torch.long), 0,
                                    torch.qint8)
    qconv.set_weight_bias(qw, None)
    qconv.scale, qconv.zero_point = float(tx.abs().max()) / 64, 128
    qx = torch.quantize_per_tensor(tx, float(tx.abs().max()) / 127, 128, torch.quint8)
    return lambda: qconv(qx)


def cpu_model() -> str:
    return kernels.info()["cpu"]


def fmt_load(result, when: str) -> str:
    load = result.get("loadavg_1_5_15", {}).get(when)
    return " / ".join(f"{v:.2f}" for v in load) if load else "n/a"


def markdown(result) -> str:
    lines = [
        f"Generated by `.venv/bin/python benchmarks/bench_kernels.py` on {result['date']}.",
        f"CPU: {result['cpu']} ({result['cpu_flags']}); kernel paths available: {', '.join(result['available'])}; "
        f"PyTorch {result['torch']}. Shared 2-core machine: medians of repeated runs, expect noise.",
        f"Load average (1/5/15 min) before the run: {fmt_load(result, 'before')}; after: {fmt_load(result, 'after')}.",
        "",
        "### bgemm (binary MAC/s = M * K * N / time)",
        "",
        "| M | K (bits) | N | path | threads | G binary MAC/s (median) | (fastest run) |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in result["bgemm"]:
        lines.append(f"| {r['M']} | {r['K']} | {r['N']} | {r['path']} | {r['threads']} | {r['gmacs']:.1f} "
                     f"| {r['gmacs_best']:.1f} |")
    lines += [
        "",
        f"### conv 3x3, stride 1, padding 1, batch 1, C_out = C_in (HORQ path: {result['conv_path']})",
        "",
        "Times in ms; HORQ: a `kernels.Conv2dLayer` prepared once (as the runtime's layers are), one call per"
        " run; ratio = PyTorch fp32 time / HORQ time (> 1: HORQ is faster). int8: "
        + (result["int8_note"] or "PyTorch quantized Conv2d, x86 engine, on a pre-quantized input.")
        + " fp32 layout = the faster of NCHW and channels_last by median. The contenders of a row are timed"
        " round-robin (one call each per round), so they share the machine's load.",
    ]
    fastest = "Fastest run of each measurement (least disturbed by other jobs)"
    for title, suffix in (("Medians", ""), (fastest, "_best")):
        lines += [
            "",
            f"{title}:",
            "",
            "| shape | threads | HORQ o1 | HORQ o2 | HORQ o3 | fp32 (layout) | int8 | fp32/o1 | fp32/o2 | fp32/o3 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["conv"]:
            desc = f"{r['shape']} {r['C']}ch {r['HW']}x{r['HW']}"
            fp32 = r.get("fp32" + suffix)
            fp = f"{fp32 * 1e3:.3f} ({r['fp32_layout']})" if fp32 else "n/a"
            i8 = f"{r['int8' + suffix] * 1e3:.3f}" if "int8" + suffix in r else "n/a"
            horq = [r[f"horq{o}{suffix}"] for o in ORDERS]
            ratios = [f"{fp32 / h:.2f}" if fp32 else "n/a" for h in horq]
            lines.append(f"| {desc} | {r['threads']} | " + " | ".join(f"{h * 1e3:.3f}" for h in horq)
                         + f" | {fp} | {i8} | " + " | ".join(ratios) + " |")
    lines += alone_table(result["conv"])
    lines += [
        "",
        "docs/MATH.md cost model for comparison (speedup over a float conv, ignoring the cost of betas and residuals): "
        "S_K = 64 c N_W / (K c N_W + 64 (K + 1)) with N_W = 9: "
        + "; ".join(f"{name} ({c}ch): " + ", ".join(f"K={k}: {speedup(k, c, 9):.1f}x" for k in ORDERS)
                    for name, (c, _) in CONV_SHAPES.items()) + ".",
    ]
    return "\n".join(lines)


def alone_table(conv) -> list[str]:
    """HORQ's calls timed alone (medians) and what the last thread count gains over one thread, per order."""
    rows = [r for r in conv if "alone1" in r]
    if not rows:
        return []
    one = {r["shape"]: r for r in rows if r["threads"] == 1}
    lines = [
        "",
        "HORQ alone (its three orders round-robin, no PyTorch call between: after each of its calls PyTorch's idle"
        " threads keep the other core busy for a while, which a 2-thread HORQ call in the tables above shares);"
        " medians in ms, and the speedup over 1 thread (fastest runs in brackets):",
        "",
        "| shape | threads | HORQ o1 | HORQ o2 | HORQ o3 | speedup o1 | speedup o2 | speedup o3 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        base = one.get(r["shape"])
        times = " | ".join(f"{r[f'alone{o}'] * 1e3:.3f}" for o in ORDERS)
        if base is None or r["threads"] == 1:
            gains = " | ".join("" for _ in ORDERS)
        else:
            gains = " | ".join(f"{base[f'alone{o}'] / r[f'alone{o}']:.2f}x "
                               f"({base[f'alone{o}_best'] / r[f'alone{o}_best']:.2f}x)" for o in ORDERS)
        lines.append(f"| {r['shape']} {r['C']}ch {r['HW']}x{r['HW']} | {r['threads']} | {times} | {gains} |")
    return lines


def cpu_flags() -> str:
    flags = kernels.cpu_flags()
    if not flags:
        return platform.machine()
    want = ["avx2", "popcnt", "avx512f", "avx512bw", "avx512_vpopcntdq"]
    return " ".join(f"{f}{'+' if f in flags else '-'}" for f in want)


def run(*, quick=False, skip_bgemm=False, json_path=None, doc_path=None, section=DOC_SECTION) -> dict:
    """Runs the benchmark, prints the tables, and writes them where asked (the tables between ``doc_path``'s
    ``<!-- section:begin -->`` and ``<!-- section:end -->``); returns the results.

    Raises:
        ValueError: ``doc_path`` exists but has no such section (checked before anything is timed).
    """
    if doc_path:
        check_marked_section(doc_path, section)
    reps = {"min_reps": 3, "min_seconds": 0.05} if quick else {"min_reps": 20, "min_seconds": 1.0}
    load_before = os.getloadavg()
    info = kernels.info()
    torch, _ = torch_setup()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "available": info["available"],
        "torch": torch.__version__ if torch is not None else None,
        "python": sys.version.split()[0],
        "reps": reps,
        "bgemm": [] if skip_bgemm else bench_bgemm(info["available"], reps),
        "conv_path": info["available"][0],
    }
    result["conv"], result["int8_note"] = bench_conv(result["conv_path"], reps)
    result["loadavg_1_5_15"] = {"before": list(load_before), "after": list(os.getloadavg())}
    table = markdown(result)
    print(table)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    if doc_path:
        replace_marked_section(doc_path, section, table)
    return result


