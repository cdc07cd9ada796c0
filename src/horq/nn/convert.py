"""``HORQConfig`` and ``convert_``: turn the ``nn.Linear`` / ``nn.Conv2d`` layers of a float model into HORQ layers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from torch import nn

from horq.geometry import check_order
from horq.nn.layers import HORQConv2d, HORQLinear
from horq.nn.quant import check_clip

# Exact types convert_ touches. Subclasses of nn.Linear/nn.Conv2d from elsewhere (e.g. the projection inside
# nn.MultiheadAttention, whose forward never calls the layer) are left alone: their behaviour is not ours.
_LINEAR_TYPES = (nn.Linear, HORQLinear)
_CONV_TYPES = (nn.Conv2d, HORQConv2d)


@dataclass(kw_only=True)
class HORQConfig:
    """How :func:`convert_` quantizes a model.

    Attributes:
        order: order of every converted layer (None = full precision, 0 = BWN, 1 = XNOR, K >= 2 = HORQ).
        keep_first_last_fp: the first and last Linear/Conv2d layers (module registration order) get
            ``order=None``.
        clip: straight-through window of the input quantizer (> 0) or None.
        overrides: qualified module name (as in ``model.named_modules()``) -> order; wins over the two rules
            above.
    """

    order: int | None = 2
    keep_first_last_fp: bool = True
    clip: float | None = 1.0
    overrides: dict[str, int | None] = field(default_factory=dict)

    def __post_init__(self):
        check_order(self.order)
        check_clip(self.clip)
        if not isinstance(self.keep_first_last_fp, bool):
            raise ValueError(f"keep_first_last_fp must be a bool, got {self.keep_first_last_fp!r}")
        if not isinstance(self.overrides, dict):
            raise ValueError(f"overrides must be a dict of module name -> order, got {type(self.overrides).__name__}")
        for name, order in self.overrides.items():
            if not isinstance(name, str):
                raise ValueError(f"override keys must be module names (str), got {name!r}")
            check_order(order)
        self.overrides = dict(self.overrides)

    def to_dict(self) -> dict:
        """A plain, JSON- and torch.save-friendly dict; :meth:`from_dict` inverts it."""
        return {"order": self.order, "keep_first_last_fp": self.keep_first_last_fp, "clip": self.clip,
                "overrides": dict(self.overrides)}

    @classmethod
    def from_dict(cls, d: dict) -> HORQConfig:
        """Builds a config from :meth:`to_dict`'s output; raises ValueError on unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"HORQConfig.from_dict: unknown keys {sorted(unknown)}")
        return cls(**d)


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if type(m) in _LINEAR_TYPES + _CONV_TYPES]


def _conv_unsupported(m: nn.Module) -> str | None:
    if type(m) in _CONV_TYPES:
        if m.groups != 1:
            return f"groups={m.groups}"
        if m.padding_mode != "zeros":
            return f"padding_mode={m.padding_mode!r}"
    return None


def convert_(model: nn.Module, config: HORQConfig, *, filter_fn: Callable[[str, nn.Module], bool] | None = None
             ) -> nn.Module:
    """Replaces, in place, every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` (at any depth) by a HORQ layer.

    Rules, per layer (by qualified name):

    1. ``filter_fn(name, module)`` returning False leaves the module untouched.
    2. The order is ``config.overrides[name]`` if given; else ``None`` for the first and last Linear/Conv2d
       (registration order, over all of them, excluded ones included) when ``config.keep_first_last_fp``;
       else ``config.order``.
    3. Every selected layer becomes a ``HORQLinear``/``HORQConv2d`` — also those that get ``order=None`` (they
       compute exactly what the float layer did, and carry ``order`` for reports and export). The new layer
       shares the old one's parameter objects, so an optimizer built before keeps working.
    4. A layer that is already a HORQ layer is re-converted in place (its ``order`` and ``clip`` are set).
    5. A convolution HORQConv2d cannot represent (``groups != 1`` or a non-zeros ``padding_mode``) raises
       ValueError, unless ``filter_fn`` excludes it or its resolved order is None (then it stays as it is).

    Only the exact types ``nn.Linear``, ``nn.Conv2d`` and the HORQ layers are candidates; other subclasses are
    left alone.

    Args:
        model: the model (modified in place).
        config: the :class:`HORQConfig`.
        filter_fn: optional predicate ``(name, module) -> bool``; False excludes the module.

    Returns:
        ``model``; if ``model`` is itself a Linear/Conv2d that gets converted, the new layer (use the return
        value).

    Raises:
        ValueError: on an override naming no Linear/Conv2d of the model, or naming an excluded one, or on an
            unsupported convolution (rule 5).

    Example:
        >>> model = convert_(build_model("mnist-mlp"), HORQConfig(order=2))
    """
    if not isinstance(config, HORQConfig):
        raise ValueError(f"convert_ needs a HORQConfig, got {type(config).__name__}")
    candidates = _candidates(model)
    names = [name for name, _ in candidates]
    unknown = sorted(set(config.overrides) - set(names))
    if unknown:
        raise ValueError(f"convert_: overrides name no Linear/Conv2d of the model: {unknown} (its layers: {names})")
    edge = {names[0], names[-1]} if (config.keep_first_last_fp and names) else set()

    replaced: dict[int, nn.Module] = {}
    for name, module in candidates:
        if filter_fn is not None and not filter_fn(name, module):
            if name in config.overrides:
                raise ValueError(f"convert_: override for {name!r}, which filter_fn excludes")
            continue
        if name in config.overrides:
            order = config.overrides[name]
        elif name in edge:
            order = None
        else:
            order = config.order
        if isinstance(module, (HORQLinear, HORQConv2d)):
            module.order = order
            module.clip = config.clip
            continue
        problem = _conv_unsupported(module)
        if problem is not None:
            if order is None:
                continue
            raise ValueError(f"convert_: {name!r} has {problem}, which HORQConv2d does not support; "
                             "exclude it with filter_fn or give it order None in overrides")
        cls = HORQLinear if type(module) is nn.Linear else HORQConv2d
        replaced[id(module)] = cls.from_float(cast(Any, module), order=order, clip=config.clip)

    if not replaced:
        return model
    if id(model) in replaced:
        return replaced[id(model)]
    # A module registered under several names is replaced under every one of them.
    # Nothing is replaced before every check above passed, so a failed conversion leaves the model unchanged.
    for module in list(model.modules()):
        for child_name, child in list(module._modules.items()):  # named_children() would skip repeats
            if child is not None and id(child) in replaced:
                setattr(module, child_name, replaced[id(child)])
    return model
