"""Training checkpoints: one dict per file, written atomically, loaded with ``weights_only=True``.

Layout (docs/DESIGN.md): ``model_name``, ``model_kwargs``, ``config`` (HORQConfig as a dict, or None for a
full-precision model), ``model`` (state_dict), ``optimizer``, ``scheduler``, ``epoch`` (epochs completed),
``rng``, ``metrics`` (list of per-epoch dicts), ``args`` (the training settings, plain values).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from horq.fileio import atomic_open

CHECKPOINT_VERSION = 1


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """Saves ``obj`` with ``torch.save`` atomically (see :func:`horq.fileio.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def rng_state() -> dict:
    """The state of every random generator training uses, as plain values and tensors."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": repr(random.getstate()),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    random.setstate(_literal_tuple(state["python"]))


def _literal_tuple(text: str):
    import ast

    return ast.literal_eval(text)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Loads a checkpoint dict safely (``weights_only``); clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable horq checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise ValueError(f"{path}: not a horq checkpoint (missing 'model' / 'model_name')")
    return ckpt


def build_from_checkpoint(ckpt: dict):
    """Rebuilds the architecture a checkpoint describes (zoo model, converted to its HORQ config)."""
    from horq.nn.convert import HORQConfig, convert_
    from horq.nn.zoo import build_model

    kwargs = dict(ckpt["model_kwargs"])
    kwargs["in_shape"] = tuple(kwargs["in_shape"])
    model = build_model(ckpt["model_name"], **kwargs)
    if ckpt.get("config") is not None:
        convert_(model, HORQConfig.from_dict(ckpt["config"]))
    return model


def load_model(path: str | os.PathLike):
    """Returns ``(model, checkpoint)`` with the model rebuilt, its weights loaded, in eval mode."""
    ckpt = load_checkpoint(path)
    model = build_from_checkpoint(ckpt)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt

