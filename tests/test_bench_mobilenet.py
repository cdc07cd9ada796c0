"""benchmarks/bench_mobilenet.py: its MobileNetV2 (float, and with the ungrouped convolutions binary) exported and run
by the runtime at a small input, the fused and unfused plans bit for bit equal (the script refuses to time them
otherwise) and the float model within float rounding of PyTorch's; each row names its steps and shares."""

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_mobilenet", ROOT / "benchmarks" / "bench_mobilenet.py")
bm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bm)


def test_architecture_is_mobilenet_v2():
    model = bm.mobilenet_v2()
    convs = [m for m in model.modules() if isinstance(m, bm.nn.Conv2d)]
    assert len(convs) == 52 and sum(c.groups > 1 for c in convs) == 17  # 17 depthwise layers, as MobileNetV2's
    assert sum(p.numel() for p in model.parameters()) == 3504872  # MobileNetV2 1.0's published 3.5 M parameters


@pytest.mark.parametrize("order", [None, 2])
def test_rows_at_a_small_input(order, tmp_path):
    row = bm.row(order, 32, 1, 1, tmp_path)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == ("float" if order is None else "order 2") and len(cells) == 9
    assert cells[5] == "0 / 35"  # every ReLU6 fused into the layer before it
    if order is None:
        assert float(cells[8]) < 1e-5  # the float model against PyTorch's
    assert all(re.fullmatch(r"\d+%", c) for c in cells[6:8])
