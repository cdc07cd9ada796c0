"""Model zoo: every model builds, converts at every order, runs forward and backward; architecture facts."""

import pytest
import torch
from torch import nn

from horq.nn import MODELS, HORQConfig, HORQConv2d, HORQLinear, build_model, convert_
from horq.nn.export import Residual

# Modules the exporter supports (docs/DESIGN.md).
ALLOWED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.Hardtanh, nn.MaxPool2d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d, nn.Flatten, nn.Sequential, Residual)
# Keeps the test fast; the structure is the same as width=1.
SMALL = {"cifar-vgg": {"width": 0.125}, "resnet18": {"width": 0.125}}
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_registry_and_unknown_name():
    assert set(MODELS) == {"mnist-mlp", "mnist-cnn", "cifar-vgg", "resnet18"}
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet-1000")
    with pytest.raises(ValueError, match="in_shape"):
        build_model("mnist-mlp", in_shape=(28, 28))
    with pytest.raises(ValueError, match="too small"):
        build_model("cifar-vgg", in_shape=(3, 4, 4))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plain_float_model_of_allowed_modules(name):
    model = build_model(name, **SMALL.get(name, {}))
    assert isinstance(model, nn.Sequential)
    for m in model.modules():
        assert type(m) in ALLOWED, f"{name} uses {type(m).__name__}"


def _flat(modules):
    """The modules in execution order, a Residual's body then its shortcut (each as a chain ending in the
    block's ReLU, which the test expects after the sum)."""
    out = []
    for m in modules:
        if isinstance(m, Residual):
            out += _flat(m.body) + [nn.ReLU()] + (_flat(m.shortcut) if m.shortcut is not None else [])
        else:
            out.append(m)
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_binarized_layers_follow_the_block_order(name):
    """Every layer convert_ binarizes is preceded by a BatchNorm and followed (after any pool, or after the
    residual sum) by a ReLU."""
    layers = _flat(build_model(name, **SMALL.get(name, {})))
    idx = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv2d))]
    for i in idx[1:-1]:
        assert isinstance(layers[i - 1], (nn.BatchNorm1d, nn.BatchNorm2d))
        after = layers[i + 1] if not isinstance(layers[i + 1], nn.MaxPool2d) else layers[i + 2]
        assert isinstance(after, nn.ReLU)
    assert isinstance(layers[idx[-1] - 1], nn.BatchNorm1d), "the classifier sees a centred input"


@pytest.mark.parametrize("in_shape", SHAPES)
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("order", [None, 0, 1, 2])
def test_builds_converts_and_trains_one_step(name, order, in_shape):
    torch.manual_seed(0)
    model = build_model(name, in_shape=in_shape, num_classes=7, **SMALL.get(name, {}))
    n_params = _params(model)
    convert_(model, HORQConfig(order=order))
    assert _params(model) == n_params, "the architecture does not depend on the order"
    horq = [m for m in model.modules() if isinstance(m, (HORQLinear, HORQConv2d))]
    assert horq[0].order is None and horq[-1].order is None
    assert all(m.order == order for m in horq[1:-1])
    x = torch.randn(3, *in_shape)
    out = model(x)
    assert out.shape == (3, 7)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 6])).backward()
    for p in model.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    model.eval()
    assert model(x[:1]).shape == (1, 7)


def test_parameter_counts_in_docstrings():
    # the counts written in the builders' docstrings (1x28x28 / 3x32x32, 10 classes, default widths)
    assert _params(build_model("mnist-mlp")) == 671_754
    assert _params(build_model("mnist-cnn")) == 868_362
    assert _params(build_model("cifar-vgg", in_shape=(3, 32, 32))) == 4_585_098
    for name, shape in (("mnist-mlp", (1, 28, 28)), ("mnist-cnn", (1, 28, 28)), ("cifar-vgg", (3, 32, 32))):
        assert f"{_params(build_model(name, in_shape=shape)):,}" in MODELS[name].__doc__
    for shape, classes in (((3, 224, 224), 1000), ((3, 32, 32), 10)):
        count = _params(build_model("resnet18", in_shape=shape, num_classes=classes))
        assert f"{count:,}" in MODELS["resnet18"].__doc__


def test_resnet18_layouts():
    """224x224 gets the ImageNet stem (7x7 stride 2 + max-pool), 32x32 the CIFAR one; 19 binary convolutions
    (16 3x3, three 1x1 stride-2 shortcuts) between a float stem and a float classifier."""
    big, small = build_model("resnet18", in_shape=(3, 224, 224)), build_model("resnet18", in_shape=(3, 32, 32))
    assert big[0].kernel_size == (7, 7) and big[0].stride == (2, 2) and isinstance(big[2], nn.MaxPool2d)
    assert small[0].kernel_size == (3, 3) and not any(isinstance(m, nn.MaxPool2d) for m in small.modules())
    convert_(small, HORQConfig(order=1))
    convs = [m for m in small.modules() if isinstance(m, HORQConv2d)]
    binary = [m for m in convs if m.order == 1]
    assert len(binary) == 19 and convs[0].order is None
    assert sorted(m.kernel_size for m in binary).count((1, 1)) == 3
    assert all(m.stride == (2, 2) for m in binary if m.kernel_size == (1, 1))
    with pytest.raises(ValueError, match="layout"):
        build_model("resnet18", in_shape=(3, 32, 32), layout="vgg")
