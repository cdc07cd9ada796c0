"""``horq bench model``: a packed model on the horq runtime against the same network in PyTorch fp32.

The PyTorch network is the file's graph run by the runtime's own plan and executor with PyTorch ops
(:func:`torch_module`, :func:`torch_ops`): every layer, binary ones included, becomes a float32
``F.conv2d``/``F.linear`` with the effective weights ``alpha * sign(W)``, i.e. what the network costs in
full precision on PyTorch's (oneDNN) CPU kernels. Imports torch lazily, and
without PyTorch times the runtime alone; it is a benchmark, not part of the torch-free runtime. The inputs
are random, so nothing here compares predictions: accuracy is ``horq run FILE --data NAME``'s job.
"""

from __future__ import annotations

import functools

import numpy as np

import horq.runtime as rt
from horq import format as hformat
from horq.runtime import fuse
from horq.runtime import ops as np_ops
from horq.runtime.program import Program
from horq.timing import interleaved_times


def torch_ops() -> dict:
    """The ``.horq`` ops in PyTorch float32: op name -> function(node, params, *inputs), the torch twin of
    :data:`horq.runtime.ops.OPS` (params as :func:`_torch_params` makes them)."""
    import torch
    import torch.nn.functional as F

    def affine_out(y, t):
        shape = (1, -1) + (1,) * (y.dim() - 2)
        for role, combine in (("bias", torch.add), ("scale", torch.mul), ("shift", torch.add)):
            if role in t:
                y = combine(y, t[role].reshape(shape))
        return y

    def conv2d(node, t, x):
        a = node.attrs
        return affine_out(F.conv2d(x, t["weight"], None, a["stride"], a["padding"], a["dilation"],
                                   a.get("groups", 1)), t)

    def prelu(node, t, x):  # slope per channel (C,) or per element (C, H, W)
        w = t["weight"]
        return torch.where(x >= 0, x, x * w.reshape((1, *w.shape) + (1,) * (x.dim() - 1 - w.dim())))

    def affine(node, t, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * t["scale"].reshape(shape) + t["shift"].reshape(shape)

    def pool(node, t, x):
        a = node.attrs
        if node.op == "max_pool2d":
            return F.max_pool2d(x, a["kernel"], a["stride"], a["padding"], a["dilation"])
        return F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"], count_include_pad=a["count_include_pad"])

    linear = lambda node, t, x: affine_out(F.linear(x, t["weight"]), t)  # noqa: E731
    return {
        "conv2d": conv2d, "binary_conv2d": conv2d, "linear": linear, "binary_linear": linear, "affine": affine,
        "max_pool2d": pool, "avg_pool2d": pool, "prelu": prelu,
        "global_avg_pool": lambda node, t, x: x.mean(dim=(2, 3), keepdim=True),
        "relu": lambda node, t, x: F.relu(x),
        "hardtanh": lambda node, t, x: F.hardtanh(x, node.attrs["min_val"], node.attrs["max_val"]),
        "flatten": lambda node, t, x: x.flatten(1),
        "add": lambda node, t, a, b: a + b,
        "concat": lambda node, t, *xs: torch.cat(xs, 1),
        "leaky_relu": lambda node, t, x: F.leaky_relu(x, node.attrs["negative_slope"]),
    }


def _torch_params(step) -> dict:
    """A planned step's arrays as float32 tensors; a layer's weights as its ``weight``, binary ones the
    effective ``alpha * sign(W)`` (:func:`horq.runtime.ops.weight_matrix`) in the layer's shape."""
    import torch

    params = dict(step.params)
    if step.op in ("binary_conv2d", "binary_linear"):
        params = {k: v for k, v in params.items() if k not in ("bits", "alpha")}
        params["weight"] = np_ops.weight_matrix(step.node, step.params, np.float32).reshape(step.node.attrs["shape"])
    return {k: torch.from_numpy(np.array(v, np.float32)) for k, v in params.items()}


def torch_module(hfile: hformat.HorqFile):
    """The graph as a float32 ``torch.nn.Module`` (eval-mode functional ops): the runtime's own plan of the
    graph as written and its executor (:class:`horq.runtime.program.Program`), each step built on
    :func:`torch_ops`."""
    import torch

    table = torch_ops()

    def build(step):
        if step.op not in table:
            raise ValueError(f"no torch equivalent for op {step.op!r}")
        return functools.partial(table[step.op], step.node, _torch_params(step))

    steps = fuse.plan(hfile.graph, rt.compute_tensors(hfile), fuse=False)  # no numpy-specific rewrites
    program = Program(steps, build, hfile.graph.output)

    class GraphModule(torch.nn.Module):
        def forward(self, x):
            return program(x)

    return GraphModule().eval()


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def bench_model(path, *, batches=(1, 64), threads=(1, 2), repeats=10, warmup=2, backend="native",
                min_seconds: float = 0.0, openvino: bool = False) -> list[dict]:
    """Latency of the horq runtime and, when PyTorch is installed, of PyTorch fp32 on the same graph, for
    each batch size and thread count; with ``openvino``, also of the file's OpenVINO twin
    (:mod:`horq.apps.openvino_twin`: the same order-1 binary network on OpenVINO's BinaryConvolution, its outputs
    checked against horq's before timing).

    The contenders run round-robin (one call of each per round, after ``warmup`` untimed calls each), so they
    share the machine's load; at least ``repeats`` rounds and ``min_seconds`` per contender. Inputs are random
    standard-normal batches: only time is measured here (accuracy: ``horq run FILE --data NAME``).

    Returns:
        One dict per configuration: ``batch``, ``threads``, ``backend``, ``horq_ms`` and ``torch_ms``
        (medians), ``horq_best_ms`` and ``torch_best_ms`` (fastest runs), ``speedup`` (of the medians); the
        torch entries are None without PyTorch. With ``openvino``: ``ov_ms``, ``ov_best_ms``, ``ov_ratio``
        (OpenVINO's median / horq's) and ``ov_vs_horq`` (max |twin - horq| / max |horq| on the timed input).

    Raises:
        ImportError: ``openvino`` and the package is not installed.
        NotImplementedError: ``openvino`` and the file has no twin (orders >= 2, input channels of a binary
            layer not a multiple of 8, an op the twin does not map).
    """
    hfile = hformat.load(path)
    model = rt.Model(hfile, backend=backend)
    twin = None
    if openvino:
        from horq.apps import openvino_twin

        openvino_twin.binary_twin(hfile, 1)  # refuses an unsupported file before any timing
        twin = functools.partial(openvino_twin.infer_request, hfile)
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
                rows += _bench_threads(model, tmod, nt, batches, rng, repeats, warmup, min_seconds, twin)
    finally:
        if torch is not None:
            torch.set_num_threads(before)
    return rows


def _openvino_call(twin, x, threads, horq_output):
    """A call of the OpenVINO twin (``twin(batch, threads)``: an infer request) on x, and its checked difference
    from horq's output."""
    from horq.apps import openvino_twin

    req = twin(x.shape[0], threads)
    rel = openvino_twin.check(req.infer([x])[0], horq_output)
    return functools.partial(req.infer, [x]), rel


def _bench_threads(model, tmod, nt, batches, rng, repeats, warmup, min_seconds, twin=None) -> list[dict]:
    import contextlib

    rows = []
    for b in batches:
        x = rng.standard_normal((b,) + tuple(model.input_shape)).astype(np.float32)
        calls = {"horq": functools.partial(model, x)}
        ov_rel = None
        if twin is not None:
            calls["openvino"], ov_rel = _openvino_call(twin, x, nt, model(x))
        guard = contextlib.nullcontext()
        if tmod is not None:
            import torch

            calls["torch"] = functools.partial(tmod, torch.from_numpy(x))
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
        if twin is not None:
            t_ov, b_ov = res["openvino"]
            rows[-1].update(ov_ms=1e3 * t_ov, ov_best_ms=1e3 * b_ov, ov_ratio=t_ov / t_horq, ov_vs_horq=ov_rel)
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
#: The columns --openvino adds.
OV_COLUMNS = (
    ("OV binary ms", "median of OpenVINO running the same order-1 binary network (horq.apps.openvino_twin: "
                     "FakeQuantize + BinaryConvolution with XNOR-Net's betas, float32), its output checked against "
                     "horq's first"),
    ("OV ratio", "OV binary ms / horq ms (above 1: the packed model on horq is faster)"),
    ("OV fastest ms", "fastest single call of OpenVINO"),
)


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def format_bench(rows, *, markdown: bool = False) -> str:
    """The rows of :func:`bench_model` as a text table (``horq bench model``) or a markdown table, with a
    legend of the columns under it."""
    ov = any("ov_ms" in r for r in rows)
    columns = COLUMNS[:-1] + (OV_COLUMNS if ov else ()) + COLUMNS[-1:]  # backend stays last
    head = [name for name, _ in columns]
    body = []
    for r in rows:
        ratio = (None if r["torch_best_ms"] is None else r["torch_best_ms"] / r["horq_best_ms"])
        cells = [str(r["batch"]), str(r["threads"]), f"{r['horq_ms']:.2f}", _cell(r["torch_ms"], "{:.2f}"),
                 _cell(r["speedup"], "{:.2f}x"), f"{r['horq_best_ms']:.2f}", _cell(r["torch_best_ms"], "{:.2f}"),
                 _cell(ratio, "{:.2f}x")]
        if ov:
            cells += [_cell(r.get("ov_ms"), "{:.2f}"), _cell(r.get("ov_ratio"), "{:.2f}x"),
                      _cell(r.get("ov_best_ms"), "{:.2f}")]
        body.append(cells + [r["backend"]])
    legend = [f"{name}: {meaning}" for name, meaning in columns]
    legend.append("Calls alternate between the contenders (round-robin) after warm-up, so both see the same load.")
    if any(r["torch_ms"] is None for r in rows):
        legend.append("-: PyTorch is not installed here, so only the horq runtime was timed.")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * (len(head) - 1) + " --- |"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines + [""] + [f"- {line}" for line in legend])
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    lines = [" ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines += [" ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines + [""] + legend)
