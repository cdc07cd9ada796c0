"""PyTorch side of horq (the only package that imports torch): quantizers, HORQ layers, ``convert_``, zoo."""

from horq.nn.convert import HORQConfig, convert_
from horq.nn.layers import HORQConv2d, HORQLinear
from horq.nn.quant import binarize_weights, binary_weight, residual_approx, residual_binarize
from horq.nn.zoo import MODELS, build_model

__all__ = [
    "HORQConfig",
    "HORQConv2d",
    "HORQLinear",
    "MODELS",
    "binarize_weights",
    "binary_weight",
    "build_model",
    "convert_",
    "residual_approx",
    "residual_binarize",
]
