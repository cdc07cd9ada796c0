"""``horq analyze storage``: bytes of a model per order, packed vs float32, and of its binarized activations.

Weights (counted from the bit counts, with the layout DESIGN.md fixes for ``PackedWeights`` and ``.horq`` files):
a binary layer (order 0..K) stores ``C_out * words_for(n)`` 64-bit words of signs plus one float32 ``alpha``
per output channel (and its float32 bias); every other tensor of the state_dict (full-precision first and last
layers, BatchNorm parameters and running statistics) stays float32. The weights are order one at every order,
so orders 0-4 store the same bytes; what the order changes is the input side.

Activations (per sample): a binary layer of order K >= 1 turns each input column (n values) into K planes of
``words_for(n)`` words and K float32 betas; the float32 alternative is the unfolded columns (``n`` floats each).

When the packed-format exporter (:func:`horq.nn.export.export`) is importable, each model is also exported
and the real ``.horq`` file size is reported beside the count, with float parameters stored as float32 (exact)
and as float16 (``horq export --float16``).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from horq.apps.experiments.common import command_line, machine_info, order_key, order_label, report_header, save_report
from horq.geometry import conv_output_hw
from horq.sizes import FLOAT32_BYTES, float32_state_bytes

FLOAT_BYTES = FLOAT32_BYTES
BATCH = 2  # samples of the shape-probing forward pass (any size works in eval mode)


def _words_bytes(n: int) -> int:
    from horq.bits import WORD_BITS, words_for

    return words_for(n) * WORD_BITS // 8


def count_bytes(model, in_shape) -> dict:
    """Counts a (converted or float) model's bytes; ``in_shape`` = (C, H, W) of one sample.

    Returns:
        dict with ``float32_bytes`` (:func:`horq.sizes.float32_state_bytes`), ``packed_bytes`` (binary
        weights as packed words + alpha), ``binary_layers``, ``fp_layers`` (names), and per-sample activation
        bytes of the binary layers' inputs: ``act_float32_bytes`` (unfolded columns) and ``act_packed_bytes``
        (K planes + K betas per column; equal to the float count for order 0, whose inputs stay real).
    """
    import torch
    from torch import nn

    float32 = float32_state_bytes(model.state_dict().values())
    packed = float32
    binary, fp = [], []
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    for name, m in layers.items():
        order = getattr(m, "order", None)
        if order is None:
            fp.append(name)
            continue
        binary.append(name)
        c_out, n = m.weight.shape[0], m.weight[0].numel()
        packed += c_out * _words_bytes(n) + c_out * FLOAT_BYTES - m.weight.numel() * FLOAT_BYTES

    act = {"float": 0, "packed": 0}  # summed over the batch of BATCH samples below

    def hook(mod, inp):
        x = inp[0]
        if isinstance(mod, nn.Conv2d):
            n = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
            pads = mod._reversed_padding_repeated_twice
            h = x.shape[-2] + pads[2] + pads[3]
            w = x.shape[-1] + pads[0] + pads[1]
            oh, ow = conv_output_hw((h, w), mod.kernel_size, mod.stride, (0, 0), mod.dilation)
            cols = oh * ow * x.shape[0]
        else:
            n, cols = mod.in_features, x.numel() // mod.in_features
        k = mod.order
        act["float"] += cols * n * FLOAT_BYTES
        act["packed"] += cols * (k * _words_bytes(n) + k * FLOAT_BYTES) if k >= 1 else cols * n * FLOAT_BYTES

    hooks = [layers[n].register_forward_pre_hook(hook) for n in binary]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((BATCH, *in_shape)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {"float32_bytes": float32, "packed_bytes": packed, "binary_layers": binary, "fp_layers": fp,
            "act_float32_bytes": act["float"] // BATCH, "act_packed_bytes": act["packed"] // BATCH}


def _exported_size(model, in_shape, float_dtype="float32") -> tuple[int | None, str]:
    from horq.nn.export import export

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.horq"
        try:
            export(model.eval(), path, input_shape=tuple(in_shape), float_dtype=float_dtype)
        except Exception as exc:  # noqa: BLE001 - report, do not fail the count
            return None, f"export failed: {type(exc).__name__}: {exc}"
        return path.stat().st_size, "horq.nn.export"


def run_storage(*, models, data: str = "mnist", data_root: str | None = None, orders=(None, 0, 1, 2, 3, 4),
                all_binary: bool = False, out, argv=None) -> dict:
    """Counts (and, where possible, exports) every zoo model at every order; writes JSON and markdown.

    ``all_binary`` binarizes the first and last layers too (docs/MATH.md "Network blocks": by default they stay
    full precision).
    """
    from horq.data.registry import DATASETS
    from horq.nn.convert import HORQConfig, convert_
    from horq.nn.zoo import build_model

    if data not in DATASETS:
        raise ValueError(f"unknown dataset {data!r}")
    info = DATASETS[data]
    in_shape, num_classes = tuple(info.shape), info.num_classes
    rows = []
    for name in models:
        base = build_model(name, in_shape=in_shape, num_classes=num_classes)
        for order in orders:
            model = copy.deepcopy(base)
            if order is not None:
                convert_(model, HORQConfig(order=order, keep_first_last_fp=not all_binary))
            row = {"model": name, "order": order_key(order), **count_bytes(model, in_shape)}
            row["file_bytes"], row["file_source"] = _exported_size(model, in_shape)
            row["file16_bytes"], _ = _exported_size(model, in_shape, "float16")
            rows.append(row)
    result = {"command": command_line(argv) if argv is not None else None, "machine": machine_info(),
              "data": data, "in_shape": list(in_shape), "num_classes": num_classes, "all_binary": all_binary,
              "rows": rows}
    out = Path(out)
    save_report(out, "storage", result, markdown)
    return result


def markdown(result: dict) -> str:
    lines = [
        *report_header(result),
        f"Input {tuple(result['in_shape'])}, {result['num_classes']} classes; "
        + ("every layer binary" if result.get("all_binary") else "first and last layers full precision")
        + ". Weights counted from the bit counts "
        "(binary weights: 64-bit words of signs + float32 alpha per output channel; everything else float32, "
        "BatchNorm statistics included). `.horq` file = the size of the file `horq.nn.export` writes (BatchNorm "
        "folded, plus JSON graph and header), where the exporter ran, with float parameters in float32 and, "
        "then in float16 (`horq export --float16`); file ratio = float32 weights / file. "
        "Activations: bytes of the binary layers' "
        "input columns for one sample, float32 vs K sign planes + K betas per column.",
        "",
        "| model | order | binary layers | float32 weights (B) | packed weights (B) | ratio | .horq file (B) | "
        "file ratio | .horq float16 (B) | file ratio | binary-layer inputs fp32 (B/sample) | packed (B/sample) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        order = None if r["order"] == "fp" else int(r["order"][1:])
        files = []
        for key in ("file_bytes", "file16_bytes"):
            size = r.get(key)
            files.append((f"{size:,}", f"{r['float32_bytes'] / size:.1f}x") if size
                         else (f"n/a ({r['file_source']})" if key == "file_bytes" else "n/a", "-"))
        lines.append(
            f"| {r['model']} | {order_label(order)} | {len(r['binary_layers'])} | {r['float32_bytes']:,} | "
            f"{r['packed_bytes']:,} | {r['float32_bytes'] / r['packed_bytes']:.1f}x | {files[0][0]} | {files[0][1]} | "
            f"{files[1][0]} | {files[1][1]} | "
            + (f"{r['act_float32_bytes']:,} | {r['act_packed_bytes']:,} |" if r["binary_layers"] else "- | - |"))
    return "\n".join(lines).lstrip("\n")
