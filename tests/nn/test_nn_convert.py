"""HORQConfig and convert_: nested models, the first/last rule, overrides, filter_fn, re-conversion."""

import pytest
import torch
from torch import nn

from horq.nn import HORQConfig, HORQConv2d, HORQLinear, convert_


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                                  nn.BatchNorm2d(6), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.body(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.inner = Inner()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.pool(self.inner(torch.relu(self.stem(x)))))


NAMES = ["stem", "inner.body.1", "inner.body.4", "head.1", "head.3"]


def _orders(model):
    return {name: m.order for name, m in model.named_modules() if isinstance(m, (HORQLinear, HORQConv2d))}


def test_nested_model_first_last_rule_and_same_function():
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(2, 2, 5, 5)
    before = model(x)
    weights = {n: m.weight for n, m in model.named_modules() if n in NAMES}
    out = convert_(model, HORQConfig(order=2))
    assert out is model
    assert _orders(model) == {"stem": None, "inner.body.1": 2, "inner.body.4": 2, "head.1": 2, "head.3": None}
    for name, m in model.named_modules():
        if name in NAMES:
            assert m.weight is weights[name], "parameters are shared, not copied"
    assert not model.training and not model.inner.body[1].training
    assert model(x).shape == before.shape
    convert_(model, HORQConfig(order=None))
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_keep_first_last_off_and_overrides_win():
    model = convert_(Net(), HORQConfig(order=1, keep_first_last_fp=False,
                                       overrides={"inner.body.4": 3, "head.3": None, "stem": 0}))
    assert _orders(model) == {"stem": 0, "inner.body.1": 1, "inner.body.4": 3, "head.1": 1, "head.3": None}
    model = convert_(Net(), HORQConfig(order=2, overrides={"stem": 1}))
    assert _orders(model)["stem"] == 1 and _orders(model)["head.3"] is None


def test_filter_fn_excludes_modules():
    model = convert_(Net(), HORQConfig(order=2), filter_fn=lambda name, m: not name.startswith("inner"))
    assert type(model.inner.body[1]) is nn.Conv2d and type(model.inner.body[4]) is nn.Conv2d
    assert _orders(model) == {"stem": None, "head.1": 2, "head.3": None}
    with pytest.raises(ValueError, match="filter_fn excludes"):
        convert_(Net(), HORQConfig(overrides={"stem": 2}), filter_fn=lambda name, m: name != "stem")


def test_reconversion_changes_order_and_clip_in_place():
    model = convert_(Net(), HORQConfig(order=2))
    layer = model.inner.body[1]
    convert_(model, HORQConfig(order=3, clip=None, keep_first_last_fp=False))
    assert model.inner.body[1] is layer and layer.order == 3 and layer.clip is None
    assert _orders(model)["stem"] == 3


def test_unknown_override_and_unsupported_conv():
    with pytest.raises(ValueError, match="overrides name no"):
        convert_(Net(), HORQConfig(overrides={"inner.body.2": 1}))
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match="groups=2"):
        convert_(grouped, HORQConfig(order=2))
    assert type(grouped[1]) is nn.Conv2d, "a failed conversion leaves the model unchanged"
    convert_(grouped, HORQConfig(order=2), filter_fn=lambda name, m: m.groups == 1)
    assert type(grouped[1]) is nn.Conv2d
    fp = convert_(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3)),
                  HORQConfig(order=2, overrides={"1": None}))
    assert type(fp[1]) is nn.Conv2d and fp[2].order is None


def test_shared_module_and_bare_layer():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Linear(4, 4), shared, nn.ReLU(), shared, nn.Linear(4, 2))
    convert_(model, HORQConfig(order=2))
    assert model[1] is model[3] and isinstance(model[1], HORQLinear) and model[1].order == 2
    bare = convert_(nn.Linear(3, 2), HORQConfig(order=2, keep_first_last_fp=False))
    assert isinstance(bare, HORQLinear) and bare.order == 2


def test_other_linear_subclasses_are_left_alone():
    model = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 1), nn.Linear(4, 4), nn.Linear(4, 2))
    convert_(model, HORQConfig(order=2))
    assert type(model[1].out_proj) is not HORQLinear
    assert _orders(model) == {"0": None, "2": 2, "3": None}


def test_config_round_trip_and_validation():
    cfg = HORQConfig(order=3, keep_first_last_fp=False, clip=None, overrides={"a.b": None, "c": 1})
    d = cfg.to_dict()
    assert d == {"order": 3, "keep_first_last_fp": False, "clip": None, "overrides": {"a.b": None, "c": 1}}
    assert HORQConfig.from_dict(d) == cfg
    assert HORQConfig.from_dict(HORQConfig().to_dict()) == HORQConfig()
    with pytest.raises(TypeError):
        HORQConfig(2)  # keyword-only
    with pytest.raises(ValueError, match="unknown keys"):
        HORQConfig.from_dict({"order": 2, "bits": 3})
    for bad in (dict(order=-1), dict(order=1.5), dict(clip=0), dict(overrides={"x": 99}),
                dict(overrides=[("x", 1)]), dict(keep_first_last_fp=1)):
        with pytest.raises(ValueError):
            HORQConfig(**bad)
    with pytest.raises(ValueError, match="HORQConfig"):
        convert_(Net(), {"order": 2})
