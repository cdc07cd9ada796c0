"""``horq bench model``: a packed model on the horq runtime against the same network in PyTorch fp32.

The PyTorch network is rebuilt from the file's graph (:func:`torch_module`): every layer, binary ones
included, becomes a float32 ``F.conv2d``/``F.linear`` with the effective weights ``alpha * sign(W)``,
i.e. what the network costs in full precision on PyTorch's (oneDNN) CPU kernels. Imports torch lazily; it
is a benchmark, not part of the torch-free runtime.
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
            y = F.conv2d(x, t["weight"], None, a["stride"], a["padding"], a["dilation"])
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
        raise ValueError(f"no torch equivalent for op {node.op!r}")

    class GraphModule(torch.nn.Module):
        def forward(self, x):
            env = {hformat.INPUT: x}
            for node in hfile.graph.nodes:
                env[node.name] = run(node, params[node.name], *(env[r] for r in node.inputs))
            return env[hfile.graph.output]

    return GraphModule().eval()


def bench_model(path, *, batches=(1, 64), threads=(1, 2), repeats=10, warmup=2, backend="native",
                min_seconds: float = 0.0) -> list[dict]:
    """Latency of the horq runtime and of PyTorch fp32 for each batch size and thread count.

    The two run round-robin (one call of each per round, after ``warmup`` untimed calls each), so they share
    the machine's load; at least ``repeats`` rounds and ``min_seconds`` per contender.

    Returns:
        One dict per configuration: ``batch``, ``threads``, ``backend``, ``horq_ms`` and ``torch_ms``
        (medians), ``horq_best_ms`` and ``torch_best_ms`` (fastest runs), ``speedup`` (of the medians),
        ``argmax_agree``.
    """
    import torch

    hfile = hformat.load(path)
    model = rt.Model(hfile, backend=backend)
    tmod = torch_module(hfile)
    rng = np.random.default_rng(0)
    rows = []
    before = torch.get_num_threads()
    try:
        for nt in threads:
            torch.set_num_threads(nt)
            with rt.num_threads(nt):  # the kernels and numpy's BLAS, like PyTorch's intra-op pool
                rows += _bench_threads(model, tmod, nt, batches, rng, repeats, warmup, min_seconds)
    finally:
        torch.set_num_threads(before)
    return rows


def _bench_threads(model, tmod, nt, batches, rng, repeats, warmup, min_seconds) -> list[dict]:
    import torch

    rows = []
    for b in batches:
        x = rng.standard_normal((b,) + tuple(model.input_shape)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            ref = tmod(xt).numpy()
            out = model(x)
            for _ in range(warmup):
                tmod(xt), model(x)
            res = interleaved_times({"horq": lambda: model(x), "torch": lambda: tmod(xt)},
                                    min_reps=repeats, min_seconds=min_seconds)
        (t_horq, b_horq), (t_torch, b_torch) = res["horq"], res["torch"]
        rows.append({"batch": b, "threads": nt, "backend": model.backend, "horq_ms": 1e3 * t_horq,
                     "torch_ms": 1e3 * t_torch, "horq_best_ms": 1e3 * b_horq, "torch_best_ms": 1e3 * b_torch,
                     "speedup": t_torch / t_horq,
                     "argmax_agree": float((out.argmax(1) == ref.argmax(1)).mean()) if out.ndim == 2 else None})
    return rows


def format_bench(rows, *, markdown: bool = False) -> str:
    """The rows of :func:`bench_model` as a text table (``horq bench model``) or a markdown table."""
    head = ["batch", "threads", "horq ms", "torch fp32 ms", "speedup", "horq fastest ms", "torch fastest ms",
            "fastest ratio", "argmax", "backend"]
    body = []
    for r in rows:
        agree = "-" if r["argmax_agree"] is None else f"{r['argmax_agree']:.0%}"
        body.append([str(r["batch"]), str(r["threads"]), f"{r['horq_ms']:.2f}", f"{r['torch_ms']:.2f}",
                     f"{r['speedup']:.2f}x", f"{r['horq_best_ms']:.2f}", f"{r['torch_best_ms']:.2f}",
                     f"{r['torch_best_ms'] / r['horq_best_ms']:.2f}x", agree, r["backend"]])
    note = ("medians (and fastest runs) of round-robin calls after warm-up; PyTorch runs the same graph with float "
            "weights alpha*sign(W) (so it does not quantize inputs: 'argmax' is how often its classes agree with "
            "the packed model's)")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * (len(head) - 1) + " --- |"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines + ["", note.capitalize() + "."])
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    lines = [" ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += [" ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines + [note])
