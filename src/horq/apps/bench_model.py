"""``horq bench model``: a packed model on the horq runtime against the same network in PyTorch fp32.

The PyTorch network is rebuilt from the file's graph (:func:`torch_module`): every layer, binary ones
included, becomes a float32 ``F.conv2d``/``F.linear`` with the effective weights ``alpha * sign(W)``,
i.e. what the network costs in full precision on PyTorch's (oneDNN) CPU kernels. Imports torch lazily, and
without PyTorch times the runtime alone; it is a benchmark, not part of the torch-free runtime. The inputs
are random, so nothing here compares predictions: accuracy is ``horq run FILE --data NAME``'s job.
"""

from __future__ import annotations

import numpy as np

import horq.runtime as rt
from horq import format as hformat
from horq.runtime import ops as np_ops
from horq.timing import interleaved_times


def torch_module(hfile: hformat.HorqFile):
    """The graph as a float32 ``torch.nn.Module`` (eval-mode functional ops)."""
    import torch
    import torch.nn.functional as F

    params = {}
    tensors = rt.compute_tensors(hfile)
    for node in hfile.graph.nodes:
        p = np_ops.prepare(node, tensors, dtype=np.float32)
        t = {k: torch.from_numpy(np.array(v)) for k, v in p.items() if isinstance(v, np.ndarray)}
        if "matrix" in t:
            binary = node.op in hformat.BINARY_OPS
            shape = node.attrs["shape"] if binary else hfile.tensors[node.tensors["weight"]].shape
            t["weight"] = t.pop("matrix").reshape(tuple(shape))
        params[node.name] = t

    def affine_out(y, t, ndim):
        shape = (1, -1) + (1,) * (ndim - 2)
        if "bias" in t:
            y = y + t["bias"].reshape(shape)
        if "scale" in t:
            y = y * t["scale"].reshape(shape)
        if "shift" in t:
            y = y + t["shift"].reshape(shape)
        return y

    def run(node, t, *xs):
        a, x = node.attrs, xs[0]
        if node.op in ("conv2d", "binary_conv2d"):
            y = F.conv2d(x, t["weight"], None, a["stride"], a["padding"], a["dilation"], a.get("groups", 1))
            return affine_out(y, t, 4)
        if node.op in ("linear", "binary_linear"):
            return affine_out(F.linear(x, t["weight"]), t, 2)
        if node.op == "affine":
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return x * t["scale"].reshape(shape) + t["shift"].reshape(shape)
        if node.op == "max_pool2d":
            return F.max_pool2d(x, a["kernel"], a["stride"], a["padding"], a["dilation"])
        if node.op == "avg_pool2d":
            return F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"], count_include_pad=a["count_include_pad"])
        if node.op == "global_avg_pool":
            return x.mean(dim=(2, 3), keepdim=True)
        if node.op == "relu":
            return F.relu(x)
        if node.op == "hardtanh":
            return F.hardtanh(x, a["min_val"], a["max_val"])
        if node.op == "flatten":
            return x.flatten(1)
        if node.op == "add":
            return x + xs[1]
        if node.op == "concat":
            return torch.cat(xs, 1)
        if node.op == "leaky_relu":
            return F.leaky_relu(x, a["negative_slope"])
        if node.op == "prelu":  # slope per channel (C,) or per element (C, H, W)
            w = t["weight"]
            return torch.where(x >= 0, x, x * w.reshape((1, *w.shape) + (1,) * (x.dim() - 1 - w.dim())))
        raise ValueError(f"no torch equivalent for op {node.op!r}")

    class GraphModule(torch.nn.Module):
        def forward(self, x):
            env = {hformat.INPUT: x}
            for node in hfile.graph.nodes:
                env[node.name] = run(node, params[node.name], *(env[r] for r in node.inputs))
            return env[hfile.graph.output]

    return GraphModule().eval()


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def bench_model(path, *, batches=(1, 64), threads=(1, 2), repeats=10, warmup=2, backend="native",
                min_seconds: float = 0.0) -> list[dict]:
    """Latency of the horq runtime and, when PyTorch is installed, of PyTorch fp32 on the same graph, for
    each batch size and thread count.

    The contenders run round-robin (one call of each per round, after ``warmup`` untimed calls each), so they
    share the machine's load; at least ``repeats`` rounds and ``min_seconds`` per contender. Inputs are random
    standard-normal batches: only time is measured here (accuracy: ``horq run FILE --data NAME``).

    Returns:
        One dict per configuration: ``batch``, ``threads``, ``backend``, ``horq_ms`` and ``torch_ms``
        (medians), ``horq_best_ms`` and ``torch_best_ms`` (fastest runs), ``speedup`` (of the medians); the
        torch entries are None without PyTorch.
    """
    hfile = hformat.load(path)
    model = rt.Model(hfile, backend=backend)
    torch = _torch_or_none()
    tmod = torch_module(hfile) if torch is not None else None
    rng = np.random.default_rng(0)
    rows = []
    before = torch.get_num_threads() if torch is not None else None
    try:
        for nt in threads:
            if torch is not None:
                torch.set_num_threads(nt)
            with rt.num_threads(nt):  # the kernels and numpy's BLAS, like PyTorch's intra-op pool
                rows += _bench_threads(model, tmod, nt, batches, rng, repeats, warmup, min_seconds)
    finally:
        if torch is not None:
            torch.set_num_threads(before)
    return rows


def _bench_threads(model, tmod, nt, batches, rng, repeats, warmup, min_seconds) -> list[dict]:
    import contextlib

    rows = []
    for b in batches:
        x = rng.standard_normal((b,) + tuple(model.input_shape)).astype(np.float32)
        calls = {"horq": lambda: model(x)}
        guard = contextlib.nullcontext()
        if tmod is not None:
            import torch

            xt = torch.from_numpy(x)
            calls["torch"] = lambda: tmod(xt)
            guard = torch.inference_mode()
        with guard:
            for _ in range(warmup):
                for call in calls.values():
                    call()
            res = interleaved_times(calls, min_reps=repeats, min_seconds=min_seconds)
        t_horq, b_horq = res["horq"]
        t_torch, b_torch = res.get("torch", (None, None))
        rows.append({"batch": b, "threads": nt, "backend": model.backend, "horq_ms": 1e3 * t_horq,
                     "torch_ms": None if t_torch is None else 1e3 * t_torch, "horq_best_ms": 1e3 * b_horq,
                     "torch_best_ms": None if b_torch is None else 1e3 * b_torch,
                     "speedup": None if t_torch is None else t_torch / t_horq})
    return rows


#: (column, what it means), in table order; printed under the table.
COLUMNS = (
    ("batch", "samples per call (random standard-normal inputs; time only, no accuracy)"),
    ("threads", "threads of the horq kernels and numpy's BLAS, and of PyTorch's intra-op pool"),
    ("horq ms", "median wall time of one call of the packed model on the horq runtime"),
    ("torch fp32 ms", "median of PyTorch running the same graph in float32, binary weights as alpha*sign(W) and "
                      "inputs not quantized: the cost of this network without binarization"),
    ("speedup", "torch fp32 ms / horq ms (above 1: the packed model is faster)"),
    ("horq fastest ms", "fastest single call of the packed model (less sensitive to machine load)"),
    ("torch fastest ms", "fastest single call of PyTorch"),
    ("fastest ratio", "torch fastest ms / horq fastest ms"),
    ("backend", "runtime backend that ran the binary layers"),
)


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def format_bench(rows, *, markdown: bool = False) -> str:
    """The rows of :func:`bench_model` as a text table (``horq bench model``) or a markdown table, with a
    legend of the columns under it."""
    head = [name for name, _ in COLUMNS]
    body = []
    for r in rows:
        ratio = (None if r["torch_best_ms"] is None else r["torch_best_ms"] / r["horq_best_ms"])
        body.append([str(r["batch"]), str(r["threads"]), f"{r['horq_ms']:.2f}", _cell(r["torch_ms"], "{:.2f}"),
                     _cell(r["speedup"], "{:.2f}x"), f"{r['horq_best_ms']:.2f}", _cell(r["torch_best_ms"], "{:.2f}"),
                     _cell(ratio, "{:.2f}x"), r["backend"]])
    legend = [f"{name}: {meaning}" for name, meaning in COLUMNS]
    legend.append("Calls alternate between the contenders (round-robin) after warm-up, so both see the same load.")
    if any(r["torch_ms"] is None for r in rows):
        legend.append("-: PyTorch is not installed here, so only the horq runtime was timed.")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * (len(head) - 1) + " --- |"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines + [""] + [f"- {line}" for line in legend])
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    lines = [" ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += [" ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines + [""] + legend)
