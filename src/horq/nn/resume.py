"""Saving and restoring a training run (the loop is :mod:`horq.nn.training`): the checkpoint it writes after
every epoch, ``--resume`` (continue a run where its last checkpoint ends, possibly with a new schedule) and
``--init-from`` (start from another run's weights), and the learning-rate schedules they rebuild.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from horq.nn.checkpoint import CHECKPOINT_VERSION, check_state_fits, load_checkpoint, rng_state, set_rng_state

if TYPE_CHECKING:
    from horq.nn.training import TrainSettings

#: Settings a resumed run may change; everything else that shapes the model or its data must match.
RESUME_MAY_CHANGE = ("epochs", "lr", "weight_decay", "schedule")
#: Settings a resumed run must share with the checkpoint (besides the model, order and model options).
RESUME_MUST_MATCH = ("clip", "keep_first_last_fp", "data", "overrides", "holdout")


def check_data_fits(ckpt: dict, in_shape, num_classes: int, *, what: str, data: str) -> None:
    """Raises ValueError unless data of ``in_shape`` and ``num_classes`` fits the checkpoint's model."""
    kwargs = ckpt.get("model_kwargs") or {}
    want_shape, want_classes = tuple(kwargs.get("in_shape", ())), kwargs.get("num_classes")
    if tuple(in_shape) != want_shape or (want_classes is not None and int(num_classes) != int(want_classes)):
        def fmt(shape):
            return "x".join(map(str, shape))

        raise ValueError(f"{what} is a model for inputs {fmt(want_shape)} with {want_classes} classes, but {data} "
                         f"has inputs {fmt(in_shape)} with {num_classes} classes")


def make_scheduler(optimizer, settings: TrainSettings):
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    if settings.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, settings.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


def _replay_scheduler(optimizer, settings: TrainSettings, epochs_done: int):
    """The schedule of ``settings`` (learning rate, weight decay) after ``epochs_done`` epochs, on ``optimizer``."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = settings.lr
        group["weight_decay"] = settings.weight_decay
    scheduler = make_scheduler(optimizer, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "step() before optimizer.step()": a replay, not a training step
        for _ in range(epochs_done):
            scheduler.step()
    return scheduler


def run_checkpoint(model, optimizer, scheduler, epoch, rows, settings, config, in_shape, num_classes, history) -> dict:
    return {
        "version": CHECKPOINT_VERSION,
        "model_name": settings.model,
        "model_kwargs": {**settings.model_args, "in_shape": [int(s) for s in in_shape],
                         "num_classes": int(num_classes)},
        "config": config.to_dict() if config is not None else None,
        "model": _plain_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "rng": rng_state(),
        "metrics": rows,
        "args": dataclasses.asdict(settings),
        "history": history,
    }


def _plain_state_dict(model) -> dict:
    # SyncBatchNorm keeps BatchNorm's keys, so a checkpoint loads into the plain zoo model either way.
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def init_from(model, settings: TrainSettings, in_shape, num_classes) -> None:
    source = f"--init-from {settings.init_from}"
    assert settings.init_from is not None
    ckpt = load_checkpoint(settings.init_from)
    if ckpt["model_name"] != settings.model:
        raise ValueError(f"{source} holds a {ckpt['model_name']!r} model, not {settings.model!r}")
    check_data_fits(ckpt, in_shape, num_classes, what=source, data=settings.data)
    check_state_fits(model, ckpt["model"], source=source)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit (missing {missing}, unexpected {unexpected})")


def resume(path: Path, model, optimizer, scheduler, settings: TrainSettings, in_shape, num_classes, info):
    """Loads OUT/last.pt into the model, optimizer and generators; returns ``(epochs done, metric rows,
    scheduler, history)``. See the module docstring for what a resume may change."""
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path} (train without --resume first)")
    ckpt = load_checkpoint(path)
    prev = ckpt.get("args") or {}
    if ckpt["model_name"] != settings.model or prev.get("order") != settings.order:
        raise ValueError(
            f"--resume: {path} was trained as {ckpt['model_name']!r} order {prev.get('order')}, "
            f"not {settings.model!r} order {settings.order}"
        )
    if prev.get("model_args", {}) != settings.model_args:
        raise ValueError(
            f"--resume: {path} was trained with model options {prev.get('model_args', {})}, "
            f"not {settings.model_args}"
        )
    for key in RESUME_MUST_MATCH:
        if key in prev and prev[key] != getattr(settings, key):
            raise ValueError(f"--resume: {path} was trained with {key} {prev[key]!r}, not {getattr(settings, key)!r} "
                             f"(to start from its weights on other terms, use --init-from)")
    check_data_fits(ckpt, in_shape, num_classes, what=f"--resume: {path}", data=settings.data)
    done = int(ckpt["epoch"])
    if settings.epochs <= done:
        raise ValueError(f"--resume: {path} has already completed {done} epoch(s); ask for more with --epochs "
                         f"(the total, e.g. --epochs {done + 1})")
    check_state_fits(model, ckpt["model"], source=f"--resume: {path}")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    changed = {k: [prev.get(k), getattr(settings, k)] for k in RESUME_MAY_CHANGE if prev.get(k) != getattr(settings, k)}
    if changed:
        scheduler = _replay_scheduler(optimizer, settings, done)
        if info.main:
            what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            print(f"resuming {path} after epoch {done} with {what}: the {settings.schedule} schedule is recomputed "
                  f"for the new settings", file=sys.stderr, flush=True)
    else:
        scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    history = list(ckpt.get("history") or [{"start_epoch": 0, "settings": prev}])
    history.append({"start_epoch": done, "settings": dataclasses.asdict(settings), "changed": changed})
    return done, list(ckpt["metrics"]), scheduler, history
