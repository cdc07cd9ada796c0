"""Training checkpoints: one dict per file, written atomically, loaded with ``weights_only=True``.

Layout (docs/DESIGN.md): ``model_name``, ``model_kwargs``, ``config`` (HORQConfig as a dict, or None for a
full-precision model), ``model`` (state_dict), ``optimizer``, ``scheduler``, ``epoch`` (epochs completed),
``rng``, ``metrics`` (list of per-epoch dicts), ``args`` (the training settings, plain values).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import cast

import numpy as np
import torch

from horq.fileio import atomic_open

CHECKPOINT_VERSION = 1
#: Keys every reader relies on (the rest is for resuming training).
REQUIRED_KEYS = ("model_name", "model_kwargs", "model")


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """Saves ``obj`` with ``torch.save`` atomically (see :func:`horq.fileio.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def rng_state() -> dict:
    """The state of every random generator training uses, as plain values and tensors."""
    np_state = cast(tuple, np.random.get_state())  # the legacy tuple form (the default)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_initialized():  # a run on the GPU: its generators too (one per device)
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores :func:`rng_state`; the GPUs' generators only where the checkpoint has them for as many devices
    as torch sees (a GPU run resumed on CPU does without them)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    random.setstate(_literal_tuple(state["python"]))


def _literal_tuple(text: str):
    import ast

    return ast.literal_eval(text)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Loads a checkpoint dict safely (``weights_only``); clear errors for missing or foreign files.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a packed ``.horq`` model (the message names the commands that take one), or a file that
            is not a horq checkpoint.
    """
    from horq.format import file_kind

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if file_kind(path) == "horq":
        raise ValueError(f"{path} is a packed .horq model, not a training checkpoint: run it with "
                         f"`horq run {path} --data NAME` or inspect it with `horq summary {path}`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable horq checkpoint ({_load_failure(exc)})") from exc
    missing = [key for key in REQUIRED_KEYS if key not in ckpt] if isinstance(ckpt, dict) else list(REQUIRED_KEYS)
    if missing:
        raise ValueError(f"{path}: not a horq checkpoint (missing {', '.join(map(repr, missing))})")
    return ckpt


def _load_failure(exc: Exception) -> str:
    # torch's unpickling errors recommend weights_only=False, which would run arbitrary code from the file:
    # never pass that advice on. A damaged zip archive gets torch's first sentence, which says so.
    text = " ".join(str(exc).split())
    if isinstance(exc, RuntimeError) and "zip" in text.lower() and "weights_only" not in text:
        return f"{type(exc).__name__}: {text.split('. ')[0][:200]}"
    return f"{type(exc).__name__}: not a file written by torch.save, or one holding more than tensors and plain values"


def check_state_fits(model, state: dict, *, source: str) -> None:
    """Raises ValueError naming the first weight of ``state`` whose shape differs from ``model``'s."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and hasattr(value, "shape") and tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(f"{source}: weight {key!r} has shape {tuple(value.shape)} but this model's is "
                             f"{tuple(own[key].shape)} (other data shape or model options?)")


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
    check_state_fits(model, ckpt["model"], source=str(path))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt

