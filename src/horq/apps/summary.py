"""Per-layer size and cost report of a packed model (``horq summary``); no torch unless given a checkpoint.

Cost model (docs/MATH.md): a binary layer of order K >= 1 does ``K * C_out * n * P`` one-bit
multiply-accumulates (``n = C_in * kh * kw``, ``P`` output positions; XNOR + popcount, 64 per word
operation) plus ``(K + 1) * C_out * P`` float operations (scaling by the betas and alpha). Counting a word
operation like one float multiply-accumulate gives the paper's speedup over the float layer,

    S_K = 64 c N_W / (K c N_W + 64 (K + 1))        (c = C_in, N_W = kh * kw; a linear layer has N_W = 1)

which ignores computing the betas and residuals. Order 0 (binary weights, real inputs) and full-precision
layers count their multiply-accumulates as float operations (S = 1). The model's speedup is the float cost
of all conv/linear layers over their cost as exported; other ops (pools, affine, activations) are listed
with their float operations but left out of it, as in the paper.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from horq import format as hformat

WORD_BITS = 64
LAYER_OPS = ("conv2d", "binary_conv2d", "linear", "binary_linear")


def speedup(order: int, c: int, n_w: int) -> float:
    """The cost model's speedup ``S_K`` of a binary layer of order ``order >= 1`` (module docstring).

    Raises:
        ValueError: unless ``order``, ``c`` and ``n_w`` are positive integers.
    """
    for name, v in (("order", order), ("c", c), ("n_w", n_w)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return WORD_BITS * c * n_w / (order * c * n_w + WORD_BITS * (order + 1))


@dataclass
class Summary:
    """Rows (one dict per node) and totals; ``state_dict_bytes`` is None when the file does not record it."""

    rows: list = field(default_factory=list)
    file_bytes: int = 0
    state_dict_bytes: int | None = None
    float_macs: int = 0
    equivalent_cost: float = 0.0

    @property
    def speedup(self) -> float:
        return self.float_macs / self.equivalent_cost if self.equivalent_cost else 1.0

    @property
    def compression(self) -> float | None:
        return None if not self.state_dict_bytes else self.state_dict_bytes / self.file_bytes


def _layer_costs(node, tensors):
    a = node.attrs
    if node.op in hformat.BINARY_OPS:
        shape = a["shape"]
    else:
        shape = tuple(tensors[node.tensors["weight"]].shape)
    cout, c = shape[0], shape[1]
    n_w = math.prod(shape[2:]) if len(shape) == 4 else 1
    positions = math.prod(node.out_shape[1:]) if len(node.out_shape) == 3 else 1
    macs = cout * c * n_w * positions
    order = a.get("order")
    if node.op.startswith("binary") and order >= 1:
        binary_ops = order * macs
        float_ops = (order + 1) * cout * positions
        s = speedup(order, c, n_w)
        weight_bits = cout * c * n_w
    else:
        binary_ops, float_ops, s = 0, macs, 1.0
        weight_bits = cout * c * n_w * (1 if node.op.startswith("binary") else 32)
    return {"order": order, "weight_bits": weight_bits, "binary_ops": binary_ops, "float_ops": float_ops,
            "speedup": s, "macs": macs}


def _other_float_ops(node):
    out = math.prod(node.out_shape)
    if node.op in ("max_pool2d", "avg_pool2d"):
        return out * math.prod(node.attrs["kernel"])
    if node.op == "global_avg_pool":
        return math.prod(node.in_shapes[0])
    if node.op in ("flatten", "concat"):  # a view, or a copy: no arithmetic
        return 0
    return out * (2 if node.op == "affine" else 1)


def summarize_file(hfile: hformat.HorqFile, file_bytes: int) -> Summary:
    """Builds the :class:`Summary` of a loaded file whose serialized size is ``file_bytes``."""
    info = hfile.graph.info
    sd = info.get("float32_state_dict_bytes")
    summ = Summary(file_bytes=int(file_bytes), state_dict_bytes=int(sd) if isinstance(sd, int) else None)
    for node in hfile.graph.nodes:
        nbytes = sum(hfile.tensors[t].nbytes for t in node.tensors.values())
        row = {"name": node.name, "op": node.op, "out_shape": node.out_shape, "bytes": int(nbytes),
               "order": None, "weight_bits": 0, "binary_ops": 0, "speedup": None}
        if node.op in LAYER_OPS:
            costs = _layer_costs(node, hfile.tensors)
            row.update({k: costs[k] for k in ("order", "weight_bits", "binary_ops", "float_ops", "speedup")})
            summ.float_macs += costs["macs"]
            summ.equivalent_cost += costs["binary_ops"] / WORD_BITS + costs["float_ops"]
        else:
            row["float_ops"] = _other_float_ops(node)
        summ.rows.append(row)
    return summ


def is_checkpoint(path) -> bool:
    """True for a torch.save zip archive (a training checkpoint); anything else is read as a ``.horq`` file."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def summarize(path) -> Summary:
    """Summary of a ``.horq`` file, or of a training checkpoint (exported in memory; imports torch).

    Raises:
        horq.format.HorqFormatError: an invalid ``.horq`` file.
        ValueError: a file that is neither a ``.horq`` file nor a horq checkpoint.
    """
    if not is_checkpoint(path):
        return summarize_file(hformat.load(path), os.path.getsize(path))
    from horq.nn.checkpoint import load_model  # torch, only for checkpoints
    from horq.nn.export import to_graph

    model, ckpt = load_model(path)
    graph, tensors = to_graph(model, input_shape=ckpt["model_kwargs"]["in_shape"])
    data = hformat.build(graph, tensors)
    return summarize_file(hformat.parse(data), len(data))


def _fmt_count(v) -> str:
    if v is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.2f}{unit}"
    return str(int(v))


def format_summary(summ: Summary) -> str:
    """The per-layer table and totals as text."""
    head = ["node", "op", "order", "output", "weight bits", "bytes", "binary ops", "float ops", "S_K"]
    lines = []
    for r in summ.rows:
        order = "fp" if r["op"] in ("conv2d", "linear") else ("-" if r["order"] is None else str(r["order"]))
        lines.append([r["name"], r["op"], order, "x".join(map(str, r["out_shape"])), _fmt_count(r["weight_bits"]),
                      _fmt_count(r["bytes"]), _fmt_count(r["binary_ops"]), _fmt_count(r["float_ops"]),
                      "-" if r["speedup"] is None else f"{r['speedup']:.1f}x"])
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    bits = sum(r["weight_bits"] for r in summ.rows)
    out.append("")
    binary_ops = sum(r["binary_ops"] for r in summ.rows)
    float_ops = sum(r["float_ops"] for r in summ.rows)
    out.append(f"total: weight bits {_fmt_count(bits)}, binary ops {_fmt_count(binary_ops)}, "
               f"float ops {_fmt_count(float_ops)}")
    fp = [r["name"] for r in summ.rows if r["op"] in ("conv2d", "linear")]
    out.append(f"full-precision layers: {', '.join(fp) if fp else 'none'}")
    out.append(f"cost-model speedup of the conv/linear layers: {summ.speedup:.2f}x")
    line = f"file size: {summ.file_bytes:,} bytes"
    if summ.state_dict_bytes:
        line += f"; float32 state_dict: {summ.state_dict_bytes:,} bytes ({summ.compression:.1f}x smaller)"
    out.append(line)
    return "\n".join(out)
