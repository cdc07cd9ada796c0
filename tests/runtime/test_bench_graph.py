"""`horq bench`'s PyTorch twin of a packed graph (horq.apps.bench_model.torch_module) covers every float op of the
format, version-3 ones included: it must compute what the reference backend computes."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import horq.runtime as rt
from agreement import fixed_weights_, inputs
from horq import format as hformat
from horq.apps.bench_model import torch_module
from horq.nn.export import export


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.side = nn.Conv2d(4, 4, 1)
        self.prelu_c = nn.PReLU(12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        y = torch.cat([F.leaky_relu(self.grouped(x), 0.2), self.side(x)], 1)
        y = self.prelu_c(y)
        return self.head(F.adaptive_avg_pool2d(y, 1).flatten(1))


def test_torch_twin_matches_reference(tmp_path):
    model = fixed_weights_(Net(), seed=0).eval()
    with torch.no_grad():
        model.prelu_c.weight.copy_(torch.linspace(-0.5, 0.5, 12))
    path = tmp_path / "m.horq"
    export(model, path, input_shape=(4, 6, 6))
    ops = {n.op for n in hformat.load(path).graph.nodes}
    assert {"concat", "leaky_relu", "prelu"} <= ops and any("groups" in n.attrs for n in hformat.load(path).graph.nodes)
    x = inputs((4, 6, 6), 16, seed=1)
    exact = rt.load(path, backend="reference")(x)
    with torch.no_grad():
        twin = torch_module(hformat.load(path))(torch.from_numpy(x)).numpy()
    # Float ops only (no quantization threshold to flip): float32 rounding of a few layers.
    np.testing.assert_allclose(twin, exact, rtol=0, atol=1e-5 * float(np.abs(exact).max()))


def test_torch_ops_cover_every_op_of_the_graph_as_written():
    """The twin runs the runtime's unfused plan, so it needs exactly the ops the reference backend has."""
    from horq.apps.bench_model import torch_ops
    from horq.runtime import reference_ops

    assert set(torch_ops()) == set(reference_ops.OPS)
