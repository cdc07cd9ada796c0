"""The training loop behind ``horq train``: one process or many (torchrun / DistributedDataParallel).

Every process runs the same loop. When ``WORLD_SIZE`` > 1 (set by torchrun) the process group is
initialised (gloo on CPU, nccl on CUDA), the model is wrapped in DistributedDataParallel, each rank
sees its own shard of every epoch through a DistributedSampler, metrics are summed across ranks, and
only rank 0 shows progress bars, writes metrics files and checkpoints.

Resume works at epoch boundaries: a checkpoint holds the model, optimizer, scheduler and random
generators after ``epoch`` complete epochs, and the sampler's shuffle is a pure function of
``(seed, epoch)``, so a resumed run repeats exactly what an uninterrupted one does. A resume may change
``epochs``, ``lr``, ``weight_decay`` and ``schedule``: the learning-rate schedule is then rebuilt for the new
values as if the run had been planned with them, replayed to the epoch the checkpoint ends at, and the
checkpoint and metrics.json record each stretch of epochs with its settings (``history``); saving and
restoring a run is :mod:`horq.nn.resume`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from horq.fileio import atomic_write_text
from horq.nn.checkpoint import atomic_torch_save
from horq.nn.resume import init_from, make_scheduler, resume, run_checkpoint

SCHEDULES = ("cosine", "step", "none")
DEVICES = ("auto", "cpu", "cuda")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another KeyboardInterrupt) during training; the message says where the last checkpoint is."""


class TrainingDiverged(FloatingPointError, ValueError):
    """The training loss became NaN or Inf (a ValueError too: the user can act on it, e.g. lower --lr)."""


@dataclass(kw_only=True)
class TrainSettings:
    """Everything one training run depends on (saved into every checkpoint and metrics file).

    ``batch_size`` is per process: with torchrun and N processes the global batch is N times larger.
    ``order`` None trains the full-precision network; an int converts it with HORQConfig(order=...).
    ``overrides`` (layer name -> order, ``horq train --orders FILE``) wins over ``order`` per layer.
    ``holdout`` leaves the held-out samples of :func:`horq.data.holdout_indices` out of training.
    """

    model: str = "mnist-cnn"
    model_args: dict = field(default_factory=dict)  # architecture options of the zoo builder (e.g. width)
    data: str = "mnist-5k"
    data_root: str | None = None
    order: int | None = 2
    clip: float | None = 1.0
    keep_first_last_fp: bool = True
    overrides: dict = field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    seed: int = 0
    threads: int | None = None
    out: str = "runs/default"
    resume: bool = False
    init_from: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    holdout: int | None = None
    device: str = "auto"
    sync_bn: bool = False
    progress: bool = True
    native: bool = True  # HORQ layers train on the native kernels on CPU where they apply (horq.nn.native_train)
    # The model and every training batch in PyTorch's channels_last memory format: its NHWC kernels, which the
    # native binary layers read and write directly (docs/TRAINING.md "Against FP in channels_last").
    channels_last: bool = False

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        for name in ("limit_train", "limit_test", "holdout"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be >= 1 (or None for all), got {value}")


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def device_kind(device: str, processes: int = 1) -> str:
    """``"cuda"`` or ``"cpu"`` for a ``--device`` choice and the number of processes on this machine: ``auto``
    takes CUDA when torch sees a GPU for every process, and the CPU otherwise."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() and torch.cuda.device_count() >= processes else "cpu"
    return device


def check_gpus_for(kind: str, processes: int) -> None:
    """Raises ValueError unless ``processes`` processes of one machine can each have a GPU of their own (NCCL
    refuses two ranks on one GPU) when ``kind`` is ``"cuda"``."""
    if kind != "cuda":
        return
    if not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    gpus = torch.cuda.device_count()
    if processes > gpus:
        raise ValueError(f"{processes} processes on CUDA need one GPU each, but torch sees {gpus} on this machine; "
                         f"use --nproc {gpus} or fewer, or --device cpu")


def _setup_distributed(kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = _Dist(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not dist.is_initialized():
        check_gpus_for(kind, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return info


def _resolve_device(kind: str, info: _Dist) -> torch.device:
    if kind == "cuda":
        check_gpus_for(kind, info.local_rank + 1)
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextlib.contextmanager
def full_float32(device: torch.device):
    """Float32 convolutions and matrix products in full float32 on CUDA (PyTorch's default lets cuDNN
    convolutions round their inputs to TF32, 10 mantissa bits), for the duration; nothing changes on CPU.

    HORQ's betas are box sums of ``|x|`` and its outputs sums of ``beta * (B . H)``: in TF32 a model evaluated on
    the GPU would disagree with its exported file (computed in float32 and float64 on CPU) by more than float32
    rounding. The previous settings are restored on exit.
    """
    if device.type != "cuda":
        yield
        return
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):  # torch >= 2.9: the per-op settings
        places = [cudnn_conv, torch.backends.cuda.matmul]
        saved = [place.fp32_precision for place in places]
        try:
            for place in places:
                place.fp32_precision = "ieee"
            yield
        finally:
            for place, value in zip(places, saved, strict=True):
                place.fp32_precision = value
        return
    saved_flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved_flags


def _load_split(settings: TrainSettings, split: str, limit: int | None):
    from horq.data import load

    ds = load(settings.data, split, root=settings.data_root)
    x, y = ds.x, ds.y
    if split == "train" and settings.holdout is not None:
        from horq.data import split_holdout

        kept, _ = split_holdout(len(y), settings.holdout)
        x, y = x[kept], y[kept]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)), ds.num_classes


def build_training_model(settings: TrainSettings, in_shape, num_classes):
    """The zoo model for these settings, converted to HORQ unless ``order`` is None."""
    from horq.nn.convert import HORQConfig, convert_
    from horq.nn.zoo import build_model

    _check_model_args(settings.model, settings.model_args)
    model = build_model(settings.model, in_shape=tuple(in_shape), num_classes=num_classes, **settings.model_args)
    config = None
    if settings.order is not None or settings.overrides:
        config = HORQConfig(order=settings.order, clip=settings.clip, keep_first_last_fp=settings.keep_first_last_fp,
                            overrides=settings.overrides)
        convert_(model, config)
    return model, config


def _check_model_args(name: str, options: dict) -> None:
    """Zoo options are sizes: each must be > 0, and an integer where the builder's default is one."""
    import inspect

    from horq.nn.zoo import MODELS

    if name not in MODELS:
        return  # build_model names the known models
    params = inspect.signature(MODELS[name]).parameters
    for key, value in options.items():
        if key not in params:
            continue  # build_model lists the builder's options
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"model option {key}={value!r} of {name!r} must be a number > 0")
        default = params[key].default
        if isinstance(default, int) and not isinstance(value, int):
            raise ValueError(f"model option {key}={value!r} of {name!r} must be an integer")


def _sum_across(values: list[float], device, info: _Dist) -> list[float]:
    if info.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def _average_buffers(model, info: _Dist) -> None:
    """Averages floating-point buffers (BatchNorm running statistics) across ranks.

    DDP keeps parameters identical but each rank's last batches update its own running statistics; the
    average makes every rank evaluate, and rank 0 save, the same model.
    """
    if info.world == 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf /= info.world


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, *, batch_size=256, device=None, info: _Dist | None = None):
    """Returns ``(mean loss, accuracy)`` of ``model`` on ``(x, y)``; with several ranks each takes a shard."""
    info = info or _Dist()
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    idx = torch.arange(info.rank, len(x), info.world)
    loss_sum = correct = 0.0
    for start in range(0, len(idx), batch_size):
        sel = idx[start : start + batch_size]
        xb, yb = x[sel].to(device), y[sel].to(device)
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    loss_sum, correct, count = _sum_across([loss_sum, correct, float(len(idx))], device, info)
    model.train(was_training)
    return loss_sum / max(count, 1), correct / max(count, 1)


def _write_metrics(out: Path, rows: list[dict], settings: TrainSettings, history: list[dict]) -> None:
    fields = list(rows[0].keys())
    lines = [",".join(fields)] + [",".join(str(r[f]) for f in fields) for r in rows]
    atomic_write_text(out / "metrics.csv", "\n".join(lines) + "\n")
    doc = {"settings": dataclasses.asdict(settings), "history": history, "epochs": rows}
    atomic_write_text(out / "metrics.json", json.dumps(doc, indent=2) + "\n")


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (unwrapped, on its device) and the run's summary."""

    model: torch.nn.Module
    summary: dict


@dataclass
class _Run:
    """The state of one training job, built by :func:`_set_up` and advanced one epoch at a time."""

    settings: TrainSettings
    info: _Dist
    device: torch.device
    out: Path
    model: torch.nn.Module
    wrapped: torch.nn.Module  # the model, inside DistributedDataParallel when there are several ranks
    config: object  # the HORQConfig the model was converted with (None: full precision)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: DistributedSampler
    loader: DataLoader
    test: tuple  # (x_test, y_test)
    in_shape: tuple
    num_classes: int
    history: list
    rows: list  # one metrics row per finished epoch
    start_epoch: int
    best: float  # best test accuracy so far (-1 before any epoch)
    saved: int  # epochs held by out/last.pt (when > 0)


def train(settings: TrainSettings) -> TrainResult:
    """Runs one training job.

    Returns:
        The trained model and a summary (best and final test accuracy, time, epochs' metrics, paths, rank).

    Raises:
        TrainingInterrupted: on Ctrl-C; the message says where the last checkpoint is.
        TrainingDiverged: when the loss becomes NaN or Inf.
        ValueError, FileNotFoundError: bad settings, or a checkpoint that does not fit (``resume``, ``init_from``).
    """
    run = _set_up(settings)
    try:
        with (_ctrl_c_between_batches(run.info.world == 1) as stop_requested, _native_path(settings, run.device),
              full_float32(run.device)):
            for epoch in range(run.start_epoch, settings.epochs):
                t0 = time.perf_counter()
                train_loss, train_acc = _train_epoch(run, epoch, stop_requested)
                _evaluate_and_save(run, epoch, train_loss, train_acc, t0)
                if stop_requested():  # Ctrl-C during evaluation or saving: this epoch is kept
                    raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        if isinstance(exc, TrainingInterrupted):
            raise
        where = (f"the last checkpoint is {run.out / 'last.pt'} (continue with --resume)" if run.saved
                 else "no epoch finished, so there is no checkpoint")
        raise TrainingInterrupted(f"training stopped with {run.saved} of {settings.epochs} epochs done; "
                                  f"{where}") from exc
    if run.info.world > 1:
        dist.barrier()
    return TrainResult(run.model, _summary(run))


def _set_up(settings: TrainSettings) -> _Run:
    """Process group, device, seeds, data, model (initialised or resumed), optimizer, schedule and loader."""
    settings.validate()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    kind = device_kind(settings.device, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    info = _setup_distributed(kind)
    device = _resolve_device(kind, info)
    out = Path(settings.out)

    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed % 2**32)
    x_train, y_train, num_classes = _load_split(settings, "train", settings.limit_train)
    x_test, y_test, _ = _load_split(settings, "test", settings.limit_test)
    in_shape = tuple(x_train.shape[1:])
    model, config = build_training_model(settings, in_shape, num_classes)
    if settings.init_from:
        init_from(model, settings, in_shape, num_classes)
    if settings.sync_bn and info.world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)

    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = make_scheduler(optimizer, settings)
    start_epoch, rows = 0, []
    history = [{"start_epoch": 0, "settings": dataclasses.asdict(settings)}]
    if settings.resume:
        start_epoch, rows, scheduler, history = resume(
            out / "last.pt", model, optimizer, scheduler, settings, in_shape, num_classes, info
        )
    wrapped = model
    if info.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    sampler: DistributedSampler = DistributedSampler(
        TensorDataset(x_train, y_train), num_replicas=info.world, rank=info.rank, shuffle=True, seed=settings.seed
    )
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=settings.batch_size, sampler=sampler)
    best = max((r["test_acc"] for r in rows), default=-1.0)
    return _Run(settings, info, device, out, model, wrapped, config, optimizer, scheduler, sampler, loader,
                (x_test, y_test), in_shape, num_classes, history, rows, start_epoch, best, saved=start_epoch)


def _train_epoch(run: _Run, epoch: int, stop_requested) -> tuple[float, float]:
    """One pass over this rank's shard; returns the epoch's ``(train loss, train accuracy)`` over all ranks."""
    settings, device = run.settings, run.device
    run.sampler.set_epoch(epoch)
    run.wrapped.train()
    loss_sum = correct = count = 0.0
    batches = _progress(run.loader, settings, run.info, f"epoch {epoch + 1}/{settings.epochs}")
    for xb, yb in batches:
        xb, yb = xb.to(device), yb.to(device)
        if settings.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        run.optimizer.zero_grad(set_to_none=True)
        logits = run.wrapped(xb)
        loss = F.cross_entropy(logits, yb)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} in epoch {epoch + 1}; lower --lr")
        loss.backward()
        run.optimizer.step()
        if stop_requested():
            raise KeyboardInterrupt
        loss_sum += loss.item() * len(yb)
        correct += (logits.argmax(1) == yb).sum().item()
        count += len(yb)
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.4f}")
    loss_sum, correct, count = _sum_across([loss_sum, correct, count], device, run.info)
    _average_buffers(run.model, run.info)
    return loss_sum / count, correct / count


def _evaluate_and_save(run: _Run, epoch: int, train_loss: float, train_acc: float, t0: float) -> None:
    """Steps the schedule, evaluates, records the epoch's metrics row and (rank 0) checkpoints and reports it."""
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    test_loss, test_acc = evaluate(run.model, *run.test, device=run.device, info=run.info)
    run.rows.append(
        {
            "epoch": epoch + 1,
            "train_loss": round(train_loss, 6),
            "train_acc": round(train_acc, 6),
            "test_loss": round(test_loss, 6),
            "test_acc": round(test_acc, 6),
            "lr": lr,
            "epoch_seconds": round(time.perf_counter() - t0, 3),
        }
    )
    if not run.info.main:
        return
    ckpt = run_checkpoint(run.model, run.optimizer, run.scheduler, epoch + 1, run.rows, run.settings, run.config,
                       run.in_shape, run.num_classes, run.history)
    atomic_torch_save(ckpt, run.out / "last.pt")
    run.saved = epoch + 1
    if test_acc > run.best:
        run.best = test_acc
        atomic_torch_save(ckpt, run.out / "best.pt")
    _write_metrics(run.out, run.rows, run.settings, run.history)
    if run.settings.progress:
        r = run.rows[-1]
        print(
            f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.4f} | "
            f"test loss {r['test_loss']:.4f} acc {r['test_acc']:.4f} | {r['epoch_seconds']:.1f}s",
            flush=True,
        )


def _summary(run: _Run) -> dict:
    rows = run.rows
    return {
        "out": str(run.out),
        "final_test_acc": rows[-1]["test_acc"] if rows else None,
        "best_test_acc": run.best if rows else None,
        "train_seconds": round(sum(r["epoch_seconds"] for r in rows), 3),
        "epochs": rows,
        "rank": run.info.rank,
        "world_size": run.info.world,
        "device": str(run.device),
    }


def _native_path(settings: TrainSettings, device: torch.device):
    """Native training (horq.nn.native_train) for the loop, on CPU unless ``settings.native`` is False; the
    kernels then use as many threads as torch."""
    from horq import kernels
    from horq.nn.native_train import native_training

    on = settings.native and device.type == "cpu"
    if on:
        kernels.set_num_threads(torch.get_num_threads())
    return native_training(on)


@contextlib.contextmanager
def _ctrl_c_between_batches(enabled: bool):
    """Yields ``stop_requested()``: after the first Ctrl-C it is True, and the loop stops at the next batch boundary
    (a KeyboardInterrupt raised inside PyTorch or a progress bar can leave them half-built, with noise on exit);
    a second Ctrl-C interrupts at once. Only in the main thread of a single process, and only where Ctrl-C
    would raise KeyboardInterrupt anyway: ranks of a distributed job must stop together, so they keep the default.
    """
    if not enabled or threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: False
        return
    requested: list[bool] = []

    def on_ctrl_c(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(True)

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _progress(loader, settings: TrainSettings, info: _Dist, desc: str):
    if not (settings.progress and info.main):
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
