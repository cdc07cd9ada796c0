"""Model zoo: plain float models whose binarizable layers sit in the block order of docs/MATH.md "Network blocks".

Every block that :func:`horq.nn.convert_` binarizes is ``BatchNorm -> [input quantization, inside the layer]
-> Conv2d/Linear -> (MaxPool) -> ReLU``: the BatchNorm centres the input (the sign of a post-ReLU activation
carries nothing), pooling acts on the real-valued outputs, and the non-linearity comes last (XNOR-Net's block
plus an activation). The first layer sees the standardized data directly and the last layer produces the
logits; both stay full precision under the default :class:`horq.nn.HORQConfig`. An architecture never depends
on the order it is later converted to, so results at different orders compare the same network.

Residual networks (``resnet18``) keep the same order inside each block: every binarizable convolution, the
1x1 shortcut included, reads a BatchNorm of its input, and the ReLU follows the residual sum (horq's
:class:`horq.nn.export.Residual`).

``MODELS`` is the registry: name -> builder ``(in_shape, num_classes, **kwargs) -> nn.Sequential``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from horq.nn.export import Residual

POOL = 2  # every MaxPool2d halves the spatial size (floor)


def _spatial_after_pools(in_shape: tuple[int, int, int], pools: int, name: str) -> tuple[int, int]:
    _, h, w = in_shape
    for _ in range(pools):
        h, w = h // POOL, w // POOL
    if h < 1 or w < 1:
        raise ValueError(f"{name}: input {tuple(in_shape)} is too small for {pools} 2x2 max-pools")
    return h, w


def _conv_block(cin: int, cout: int, *, pool: bool) -> list[nn.Module]:
    """BatchNorm -> conv 3x3 (padding 1) -> (MaxPool 2) -> ReLU: one binarizable block."""
    layers: list[nn.Module] = [nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, padding=1)]
    if pool:
        layers.append(nn.MaxPool2d(POOL))
    layers.append(nn.ReLU())
    return layers


def _linear_block(fin: int, fout: int) -> list[nn.Module]:
    """BatchNorm -> Linear -> ReLU: one binarizable block."""
    return [nn.BatchNorm1d(fin), nn.Linear(fin, fout), nn.ReLU()]


def _classifier(fin: int, num_classes: int) -> list[nn.Module]:
    """BatchNorm -> Linear: the last layer (full precision by default), producing logits."""
    return [nn.BatchNorm1d(fin), nn.Linear(fin, num_classes)]


def mnist_mlp(in_shape, num_classes, *, hidden: int = 512) -> nn.Sequential:
    """``mnist-mlp``: a 784-512-512-10 multilayer perceptron (for 1x28x28).

    ::

        Flatten
        Linear(C*H*W, hidden) -> ReLU                     first layer (full precision by default)
        BatchNorm1d -> Linear(hidden, hidden) -> ReLU      binarized
        BatchNorm1d -> Linear(hidden, num_classes)         last layer (full precision by default)

    671,754 parameters for 1x28x28 and 10 classes at ``hidden=512``; the same for every order.
    """
    c, h, w = in_shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, hidden), nn.ReLU(),
        *_linear_block(hidden, hidden),
        *_classifier(hidden, num_classes),
    )


def mnist_cnn(in_shape, num_classes, *, width: int = 32, hidden: int = 256) -> nn.Sequential:
    """``mnist-cnn``: a small CNN, three 3x3 convolutions and two linear layers (``w = width``).

    ::

        Conv2d(C, w, 3, pad 1) -> MaxPool 2 -> ReLU                   first layer (full precision by default)
        BatchNorm2d -> Conv2d(w, 2w, 3, pad 1) -> MaxPool 2 -> ReLU   binarized
        BatchNorm2d -> Conv2d(2w, 2w, 3, pad 1) -> ReLU               binarized
        Flatten
        BatchNorm1d -> Linear(2w*H/4*W/4, hidden) -> ReLU             binarized
        BatchNorm1d -> Linear(hidden, num_classes)                    last layer (full precision by default)

    Pooling early keeps the binarized convolutions at 14x14 and 7x7 for 28x28 inputs, where unfolding is cheap.
    For 1x28x28 and 10 classes at the defaults: 868,362 parameters; the same for every order.
    """
    c, _, _ = in_shape
    h, w = _spatial_after_pools(in_shape, 2, "mnist-cnn")
    flat = 2 * width * h * w
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.MaxPool2d(POOL), nn.ReLU(),
        *_conv_block(width, 2 * width, pool=True),
        *_conv_block(2 * width, 2 * width, pool=False),
        nn.Flatten(),
        *_linear_block(flat, hidden),
        *_classifier(hidden, num_classes),
    )


def cifar_vgg(in_shape, num_classes, *, width: float = 1.0) -> nn.Sequential:
    """``cifar-vgg``: VGG-small, 128C3-128C3-MP-256C3-256C3-MP-512C3-512C3-MP-GAP-FC (channels times ``width``).

    ::

        Conv2d(C, 128, 3, pad 1) -> ReLU                              first layer (full precision by default)
        BatchNorm2d -> Conv2d(128, 128, 3, pad 1) -> MaxPool 2 -> ReLU  binarized
        BatchNorm2d -> Conv2d(128, 256, 3, pad 1) -> ReLU               binarized
        BatchNorm2d -> Conv2d(256, 256, 3, pad 1) -> MaxPool 2 -> ReLU  binarized
        BatchNorm2d -> Conv2d(256, 512, 3, pad 1) -> ReLU               binarized
        BatchNorm2d -> Conv2d(512, 512, 3, pad 1) -> MaxPool 2 -> ReLU  binarized
        AdaptiveAvgPool2d(1) -> Flatten                                 global average pooling
        BatchNorm1d -> Linear(512, num_classes)                         last layer (full precision by default)

    Global average pooling before the classifier (as in network-in-network and ResNets) keeps it at
    512 x num_classes whatever the input size; a Linear on the flattened 4x4x512 map would hold 16 times the
    parameters (82k of them, plus a BatchNorm1d of 8192 channels), a third of the packed file when the other
    layers are binary. For 3x32x32 and 10 classes at ``width=1``: 4,585,098 parameters; the same for every
    order.
    """
    c, _, _ = in_shape
    _spatial_after_pools(in_shape, 3, "cifar-vgg")
    c1, c2, c3 = (max(1, round(base * width)) for base in (128, 256, 512))
    return nn.Sequential(
        nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(),
        *_conv_block(c1, c1, pool=True),
        *_conv_block(c1, c2, pool=False),
        *_conv_block(c2, c2, pool=True),
        *_conv_block(c2, c3, pool=False),
        *_conv_block(c3, c3, pool=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        *_classifier(c3, num_classes),
    )


def _basic_block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    """ResNet's BasicBlock in the block order: ``relu(body(x) + shortcut(x))``.

    ::

        body:     BatchNorm2d -> Conv2d(cin, cout, 3, stride, pad 1) -> ReLU
                  -> BatchNorm2d -> Conv2d(cout, cout, 3, pad 1)
        shortcut: identity, or BatchNorm2d -> Conv2d(cin, cout, 1, stride) where the shape changes
        ReLU on the sum
    """
    body = nn.Sequential(
        nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.ReLU(),
        nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
    )
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 1, stride=stride, bias=False))
    return [Residual(body, shortcut), nn.ReLU()]


#: Inputs with both sides at most this get the CIFAR layout of ``resnet18`` under ``layout="auto"``.
SMALL_INPUT = 64


def resnet18(in_shape, num_classes, *, width: float = 1.0, layout: str = "auto") -> nn.Sequential:
    """``resnet18``: ResNet-18 (He et al. 2016), BasicBlocks 2-2-2-2 at 64-128-256-512 channels (times
    ``width``), each block in the block order (:func:`_basic_block`).

    ::

        imagenet layout (for 224x224):
          Conv2d(C, 64, 7, stride 2, pad 3) -> BatchNorm2d -> MaxPool(3, stride 2, pad 1) -> ReLU  (float)
        cifar layout (for 32x32):
          Conv2d(C, 64, 3, pad 1) -> BatchNorm2d -> ReLU                                          (float)
        2 blocks 64ch; 2 blocks 128ch (the first stride 2); 2 blocks 256ch (stride 2); 2 blocks 512ch (stride 2)
          binarized: 16 3x3 convolutions and three 1x1 shortcuts
        AdaptiveAvgPool2d(1) -> Flatten
        BatchNorm1d -> Linear(512, num_classes)                                                   (float)

    The stem and the classifier are the first and last layers, full precision by default.

    ``layout="auto"`` takes the cifar layout for inputs up to 64x64 (:data:`SMALL_INPUT`) and the imagenet
    layout above. The stem's max-pool comes before its ReLU (they commute; the ReLU then touches a quarter
    of the values). For 3x224x224 and 1000 classes at ``width=1``: 11,688,744 parameters; for 3x32x32 and
    10 classes: 11,173,194; the same for every order.
    """
    if layout == "auto":
        layout = "cifar" if max(in_shape[1:]) <= SMALL_INPUT else "imagenet"
    if layout not in ("imagenet", "cifar"):
        raise ValueError(f"resnet18: layout must be 'auto', 'imagenet' or 'cifar', got {layout!r}")
    c = in_shape[0]
    widths = [max(1, round(base * width)) for base in (64, 128, 256, 512)]
    if layout == "imagenet":
        stem = [nn.Conv2d(c, widths[0], 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(widths[0]),
                nn.MaxPool2d(3, stride=2, padding=1), nn.ReLU()]
    else:
        stem = [nn.Conv2d(c, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    blocks, cin = [], widths[0]
    for i, cout in enumerate(widths):
        blocks += _basic_block(cin, cout, 1 if i == 0 else 2) + _basic_block(cout, cout, 1)
        cin = cout
    return nn.Sequential(*stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), *_classifier(cin, num_classes))


MODELS: dict[str, Callable[..., nn.Sequential]] = {
    "mnist-mlp": mnist_mlp,
    "mnist-cnn": mnist_cnn,
    "cifar-vgg": cifar_vgg,
    "resnet18": resnet18,
}


def build_model(name: str, *, in_shape=(1, 28, 28), num_classes: int = 10, **kwargs) -> nn.Module:
    """Builds a zoo model as a plain float ``nn.Sequential``.

    Args:
        name: a key of :data:`MODELS`.
        in_shape: ``(C, H, W)`` of one standardized input.
        num_classes: number of logits.
        **kwargs: architecture options of the builder (e.g. ``width`` for ``cifar-vgg``).

    Returns:
        The model, in training mode, with ``model.input_shape = in_shape`` (so :func:`horq.export` needs no
        ``input_shape``).

    Raises:
        ValueError: on an unknown name or option, a malformed ``in_shape``/``num_classes``, or an input too
            small.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    in_shape = tuple(int(v) for v in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    allowed = [k for k, prm in inspect.signature(MODELS[name]).parameters.items() if prm.kind == prm.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {unknown}; its options: {allowed}")
    model = MODELS[name](in_shape, int(num_classes), **kwargs)
    model.input_shape = in_shape  # per-sample shape, read by horq.export (not part of the state_dict)
    return model
