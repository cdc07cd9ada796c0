"""Hand-built graphs for format and runtime tests (no torch)."""

from __future__ import annotations

import numpy as np
import safetensors.numpy

from horq import format as hf
from horq.bits import pack_signs


def tiny_model():
    """A fixed tiny graph covering every op: binary/float conv and linear, affine, pools, add, activations.

    Values are small dyadic rationals so they are identical on every platform.
    """
    def vals(n, shape, denom=8.0):
        return ((np.arange(n) * 37 % 17) - 8).astype(np.float32).reshape(shape) / np.float32(denom)

    w1 = vals(4 * 2 * 3 * 3, (4, 2, 3, 3))
    w2 = vals(4 * 4 * 3 * 3, (4, 4, 3, 3), 4.0)
    w3 = vals(3 * 4, (3, 4))
    w4 = vals(2 * 3, (2, 3), 2.0)
    t = {
        "c1.weight": w1,
        "c1.bias": vals(4, (4,)),
        "bn.scale": np.array([1.0, 0.5, 2.0, 1.5], np.float32),
        "bn.shift": np.array([0.25, -0.5, 0.0, 0.125], np.float32),
        "c2.bits": pack_signs(w2.reshape(4, -1)),
        "c2.alpha": np.abs(w2).reshape(4, -1).mean(1).astype(np.float32),
        "c2.bias": vals(4, (4,), 16.0),
        "c2.scale": np.array([1.0, 2.0, 0.5, 1.0], np.float32),
        "c2.shift": np.array([0.0, 0.5, -0.5, 0.25], np.float32),
        "fc1.bits": pack_signs(w3),
        "fc1.alpha": np.abs(w3).mean(1).astype(np.float32),
        "fc2.weight": w4,
        "fc2.bias": np.array([0.5, -0.5], np.float32),
    }
    nodes = [
        {"name": "c1", "op": "conv2d", "inputs": ["input"], "attrs": {"padding": [1, 1]},
         "tensors": {"weight": "c1.weight", "bias": "c1.bias"}},
        {"name": "r1", "op": "relu", "inputs": ["c1"]},
        {"name": "bn", "op": "affine", "inputs": ["r1"], "tensors": {"scale": "bn.scale", "shift": "bn.shift"}},
        {"name": "c2", "op": "binary_conv2d", "inputs": ["bn"],
         "attrs": {"order": 2, "shape": [4, 4, 3, 3], "padding": [1, 1]},
         "tensors": {"bits": "c2.bits", "alpha": "c2.alpha", "bias": "c2.bias", "scale": "c2.scale",
                     "shift": "c2.shift"}},
        {"name": "res", "op": "add", "inputs": ["c2", "bn"]},
        {"name": "mp", "op": "max_pool2d", "inputs": ["res"], "attrs": {"kernel": [2, 2], "stride": [2, 2]}},
        {"name": "ap", "op": "avg_pool2d", "inputs": ["mp"],
         "attrs": {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "count_include_pad": False}},
        {"name": "ht", "op": "hardtanh", "inputs": ["ap"], "attrs": {"min_val": -1.0, "max_val": 1.0}},
        {"name": "gap", "op": "global_avg_pool", "inputs": ["ht"]},
        {"name": "fl", "op": "flatten", "inputs": ["gap"]},
        {"name": "fc1", "op": "binary_linear", "inputs": ["fl"], "attrs": {"order": 1, "shape": [3, 4]},
         "tensors": {"bits": "fc1.bits", "alpha": "fc1.alpha"}},
        {"name": "fc2", "op": "linear", "inputs": ["fc1"], "tensors": {"weight": "fc2.weight", "bias": "fc2.bias"}},
    ]
    graph = {"input": {"shape": [2, 6, 6]}, "nodes": nodes, "output": "fc2", "info": {"name": "tiny"}}
    return graph, t


def raw_file(graph, tensors, *, version=1, fmt="horq", sha=None) -> bytes:
    """Serializes without validation (to craft bad files whose checksum is nevertheless right)."""
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {"format": fmt, "version": version, "graph": graph,
            "sha256": sha if sha is not None else hf.content_hash(graph, tensors)}
    return safetensors.numpy.save(tensors, metadata={"horq": hf.canonical_json(meta)})


def header_len(data: bytes) -> int:
    return int.from_bytes(data[:8], "little")
