"""Per-node profile of a loaded model (``Model.profile(x)``, ``horq bench FILE.horq --profile``).

Each repeat runs the model's steps (the load-time plan of :mod:`horq.runtime.fuse`, so a node fused into
another appears as that step's ``fused`` list; each step's call as the backend built it) with a clock read
around every step, and times one plain call of the model in the same round, so the table can be checked
against the whole call: the steps' sum leaves out only the input check and the executor's bookkeeping.

Binary layers get their effective binary MAC rate: ``order * C_out * (C_in kh kw) * OH OW * N`` for a
convolution (``order * out * in * N`` for a linear layer) over the step's time, i.e. every order counts its
K binary planes as K XNOR-popcount passes; the input quantization and epilogue are inside the time.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from horq import format as hformat


@dataclass
class NodeTime:
    """One executed step: ``ms`` is its median over the repeats."""

    name: str
    op: str
    shape: tuple
    ms: float
    fused: tuple = ()
    binary_macs: int | None = None  # order * (order-1 MACs) of a binary layer, else None

    @property
    def gmacs(self) -> float | None:
        """Effective G binary MAC/s (None for a non-binary step)."""
        return None if self.binary_macs is None else self.binary_macs / self.ms / 1e6


@dataclass
class Profile:
    """Result of :func:`profile`: per-step medians, the whole call's median, and per-op totals."""

    nodes: list[NodeTime]
    call_ms: float
    batch: int
    repeats: int
    backend: str
    by_op: dict = field(default_factory=dict)

    @property
    def steps_ms(self) -> float:
        """Sum of the steps' medians (about ``call_ms``)."""
        return sum(n.ms for n in self.nodes)

    def format(self, *, markdown: bool = False) -> str:
        """The per-node table, the per-op table and a line comparing the sum with the whole call."""
        total = self.steps_ms
        head = ["node", "op", "output shape", "ms", "%", "G bin MAC/s"]
        rows = [[n.name + (f" (+{', '.join(n.fused)})" if n.fused else ""), n.op, "x".join(map(str, n.shape)),
                 f"{n.ms:.3f}", f"{100 * n.ms / total:.1f}", "" if n.gmacs is None else f"{n.gmacs:.0f}"]
                for n in self.nodes]
        op_head = ["op", "steps", "ms", "%", "G bin MAC/s"]
        op_rows = [[op, str(v["count"]), f"{v['ms']:.3f}", f"{100 * v['ms'] / total:.1f}",
                    "" if v["binary_macs"] is None else f"{v['binary_macs'] / v['ms'] / 1e6:.0f}"]
                   for op, v in sorted(self.by_op.items(), key=lambda kv: -kv[1]["ms"])]
        lines = [_table(head, rows, markdown), "", _table(op_head, op_rows, markdown), ""]
        binary = sum(v["ms"] for op, v in self.by_op.items() if op in hformat.BINARY_OPS)
        lines.append(f"batch {self.batch}, backend {self.backend}, medians of {self.repeats} runs: steps sum to "
                     f"{total:.3f} ms, a whole call took {self.call_ms:.3f} ms; binary layers {binary:.3f} ms "
                     f"({100 * binary / total:.1f}%), everything else {total - binary:.3f} ms "
                     f"({100 * (total - binary) / total:.1f}%).")
        lines.append("G bin MAC/s: order * C_out * C_in*kh*kw * OH*OW * N binary multiply-accumulates per second "
                     "(each order is one XNOR-popcount pass); input quantization and epilogue included.")
        return "\n".join(lines)


def _table(head, rows, markdown):
    if markdown:
        out = ["| " + " | ".join(head) + " |", "| --- | --- | --- |" + " ---: |" * (len(head) - 3)]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    just = [str.ljust, str.ljust, str.rjust] + [str.rjust] * (len(head) - 3)
    fmt = lambda r: "  ".join(j(c, w) for j, c, w in zip(just, r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def binary_macs(node, batch: int) -> int | None:
    """``order * C_out * n * positions * batch`` of a binary layer of order >= 1, else None."""
    if node.op not in hformat.BINARY_OPS or not node.attrs.get("order"):
        return None
    shape = node.attrs["shape"]
    positions = math.prod(node.out_shape[1:]) if node.op == "binary_conv2d" else 1
    return node.attrs["order"] * shape[0] * math.prod(shape[1:]) * positions * batch


def _run_steps(model, x, repeats, warmup):
    """Per-step times and output shapes of ``repeats`` runs of the model's program (a clock around every
    call), and the times of as many whole calls, after ``warmup`` untimed rounds."""
    program = model._program
    times, shapes, whole = [[] for _ in program.calls], [None] * len(program.calls), []
    for r in range(warmup + repeats):
        env = [x] + [None] * len(program.calls)
        for i, (fn, out, ins, free) in enumerate(program.calls):
            args = [env[k] for k in ins]
            t0 = time.perf_counter()
            env[out] = fn(*args)
            dt = time.perf_counter() - t0
            for k in free:
                env[k] = None
            if r >= warmup:
                times[i].append(dt)
                shapes[i] = tuple(env[out].shape)
        t0 = time.perf_counter()
        model(x)
        if r >= warmup:
            whole.append(time.perf_counter() - t0)
    return times, shapes, whole


def profile(model, x, *, repeats: int = 20, warmup: int = 2) -> Profile:
    """Times every step of ``model`` on ``x`` (see the module docstring).

    Args:
        model: a :class:`horq.runtime.Model`.
        x: a float32 batch of the model's input shape.
        repeats: timed runs (medians reported).
        warmup: untimed runs first.

    Returns:
        A :class:`Profile`; ``print(p.format())`` shows it.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    x = np.ascontiguousarray(model.check_input(x))
    times, shapes, calls = _run_steps(model, x, repeats, warmup)
    steps = model._steps
    nodes: list[NodeTime] = []
    by_op: dict = {}
    for step, ts, shape in zip(steps, times, shapes, strict=True):
        nt = NodeTime(step.name, step.op, shape, 1e3 * statistics.median(ts), tuple(step.fused),
                      binary_macs(step.node, x.shape[0]) if step.op in hformat.BINARY_OPS else None)
        nodes.append(nt)
        agg = by_op.setdefault(step.op, {"count": 0, "ms": 0.0, "binary_macs": None})
        agg["count"] += 1
        agg["ms"] += nt.ms
        if nt.binary_macs is not None:
            agg["binary_macs"] = (agg["binary_macs"] or 0) + nt.binary_macs
    return Profile(nodes, 1e3 * statistics.median(calls), x.shape[0], repeats, model.backend, by_op)


__all__ = ["NodeTime", "Profile", "binary_macs", "profile"]
