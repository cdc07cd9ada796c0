"""Byte counts that reports compare: one definition each (docs/MATH.md "Cost model" for the packed side).

The float32 size of a model is what its state (parameters and buffers) takes saved at float32: every
floating-point tensor at 4 bytes per value, every other tensor (BatchNorm's int64 ``num_batches_tracked``) at
its own item size. ``horq export``'s file info, the demo and ``horq experiment storage`` all use it.
"""

from __future__ import annotations

FLOAT32_BYTES = 4


def float32_state_bytes(tensors) -> int:
    """Bytes of ``tensors`` (a state dict's values: torch tensors or numpy arrays) stored at float32."""
    total = 0
    for t in tensors:
        numel = t.numel() if hasattr(t, "numel") else t.size
        floating = t.is_floating_point() if hasattr(t, "is_floating_point") else t.dtype.kind == "f"
        itemsize = t.element_size() if hasattr(t, "element_size") else t.dtype.itemsize
        total += numel * (FLOAT32_BYTES if floating else itemsize)
    return int(total)
