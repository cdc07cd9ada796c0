"""horq.geometry and horq.sizes: the one home of conv sizes, pairs, orders and float32 byte counts."""

import numpy as np
import pytest
import torch

from horq import geometry
from horq.sizes import float32_state_bytes


@pytest.mark.parametrize(("size", "k", "s", "p", "d"), [(7, 3, 1, 1, 1), (224, 7, 2, 3, 1), (8, 3, 2, 0, 2),
                                                         (5, 5, 1, 0, 1), (1, 1, 1, 0, 1), (9, 2, 3, 1, 2)])
def test_conv_output_size_matches_pytorch(size, k, s, p, d):
    conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    got = conv(torch.zeros(1, 1, size, size + 1)).shape[2:]
    assert geometry.conv_output_hw((size, size + 1), (k, k), (s, s), (p, p), (d, d)) == tuple(got)
    assert geometry.conv_output_size(size, k, s, p, d) == got[0]


def test_too_small_an_input_gives_a_size_below_one():
    assert geometry.conv_output_size(2, 3) == 0


def test_pair():
    assert geometry.pair(3) == (3, 3) and geometry.pair((1, 2)) == (1, 2) and geometry.pair(np.int64(2)) == (2, 2)
    assert geometry.pair([0, 4], "padding", minimum=0) == (0, 4)
    for bad in (0, (1, 0), (1, 2, 3), 1.5, True, "2"):
        with pytest.raises(ValueError, match="stride must be an integer >= 1 or a pair of them"):
            geometry.pair(bad, "stride", minimum=1)


def test_check_order():
    assert geometry.check_order(None) is None and geometry.check_order(np.int32(3)) == 3
    assert geometry.check_order(geometry.MAX_ORDER, lowest=1, allow_none=False) == geometry.MAX_ORDER
    for bad in (-1, geometry.MAX_ORDER + 1, 2.0, True):
        with pytest.raises(ValueError, match=r"order must be None or an integer in \[0, 8\]"):
            geometry.check_order(bad)
    with pytest.raises(ValueError, match=r"order must be an integer in 1\.\.8, got None"):
        geometry.check_order(None, lowest=1, allow_none=False)


def test_max_order_is_the_cores():
    """The C++ core (csrc/core/types.h kMaxOrder) takes exactly the orders geometry.MAX_ORDER allows."""
    from horq import _core, kernels

    cols = np.linspace(-1, 1, 3 * 70, dtype=np.float32).reshape(3, 70)
    kernels.quantize_pack(cols, geometry.MAX_ORDER)
    with pytest.raises(ValueError, match=f"1..{geometry.MAX_ORDER}"):
        _core.quantize_pack(cols, geometry.MAX_ORDER + 1, "generic")


def test_float32_state_bytes_counts_floats_at_four_bytes_and_others_at_their_size():
    bn = torch.nn.BatchNorm2d(3)  # weight, bias, running_mean, running_var (3 each), num_batches_tracked (int64)
    assert float32_state_bytes(bn.state_dict().values()) == 4 * 12 + 8
    assert float32_state_bytes(bn.double().state_dict().values()) == 4 * 12 + 8  # counted as stored at float32
    arrays = [np.zeros((2, 3), np.float64), np.zeros(5, np.uint64)]
    assert float32_state_bytes(arrays) == 4 * 6 + 8 * 5
