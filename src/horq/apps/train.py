"""``horq train`` and ``horq eval``: what the commands do (their arguments are in :mod:`horq.apps.train_cli`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Files that make a folder hold a training run (``horq train`` refuses to replace them silently).
RUN_FILES = ("last.pt", "best.pt", "metrics.json", "metrics.csv")

# Parsed argument -> TrainSettings field, for the settings `horq train` passes on when given.
_SETTING_ARGS = {
    "model": "model", "data": "data", "data_root": "data_root", "order": "order", "clip": "clip",
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay",
    "schedule": "schedule", "seed": "seed", "threads": "threads", "out": "out", "init_from": "init_from",
    "limit_train": "limit_train", "limit_test": "limit_test", "holdout": "holdout", "device": "device",
}
#: Keys of a --orders file that are also command-line settings: option -> (given?, value) on the command line.
_ORDERS_FILE_SETTINGS = {
    "order": ("--order", lambda args: (hasattr(args, "order"), getattr(args, "order", None))),
    "clip": ("--clip", lambda args: (hasattr(args, "clip"), getattr(args, "clip", None))),
    "keep_first_last_fp": ("--binary-first-last", lambda args: (args.binary_first_last, False)),
}


def settings_from_args(args):
    """TrainSettings from parsed ``horq train`` arguments; what was not given keeps its default."""
    from horq.nn.training import TrainSettings

    given = {field: getattr(args, name) for name, field in _SETTING_ARGS.items() if hasattr(args, name)}
    given["keep_first_last_fp"] = not args.binary_first_last
    if getattr(args, "orders", None) is not None:
        given.update(_orders_file_settings(args))
    return TrainSettings(
        **given, model_args=dict(args.model_arg), resume=args.resume, sync_bn=args.sync_bn,
        progress=not args.no_progress, native=not getattr(args, "no_native", False),
        channels_last=getattr(args, "channels_last", False),
    )


def read_orders_file(path) -> dict:
    """The keys a ``--orders`` file gives, validated by ``HORQConfig.from_dict`` (layer names are checked
    against the model when it is built).

    Raises:
        ValueError: unreadable JSON, not an object, unknown keys, or bad orders (the message names the file).
        FileNotFoundError: no such file.
    """
    from horq.nn.convert import HORQConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--orders: no file {path}")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--orders {path}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"--orders {path}: expected a JSON object such as {{\"overrides\": {{\"4\": 1}}}}, "
                         f"got {type(doc).__name__}")
    try:
        HORQConfig.from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--orders {path}: {exc}") from None
    if "overrides" not in doc:
        raise ValueError(f"--orders {path}: no \"overrides\" (layer name -> order)")
    return doc


def _orders_file_settings(args) -> dict:
    doc = read_orders_file(args.orders)
    out = {"overrides": dict(doc["overrides"])}
    for key, (option, given) in _ORDERS_FILE_SETTINGS.items():
        if key not in doc:
            continue
        on_line, value = given(args)
        if on_line and value != doc[key]:
            raise ValueError(f"{option} contradicts {key}={doc[key]!r} in --orders {args.orders}; leave one out")
        out[key] = doc[key]
    return out


def check_out_dir(out, *, resume: bool, overwrite: bool) -> None:
    """Refuses to start a new run over a folder that holds one, unless ``overwrite``.

    Raises:
        ValueError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set, or ``out`` is a file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not (resume or overwrite):
        raise ValueError(f"--out {out} already holds a training run ({', '.join(found)}); continue it with "
                         f"--resume, replace it with --overwrite, or choose another --out")


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs ``horq train`` (argv without --nproc) in ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "horq", "train", *argv]


def _strip_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def run_train(args) -> int:
    settings = settings_from_args(args)
    check_out_dir(settings.out, resume=settings.resume, overwrite=args.overwrite)
    if args.overwrite and os.environ.get("RANK", "0") == "0":
        for name in RUN_FILES:  # no stale best.pt or metrics beside the new run's
            (Path(settings.out) / name).unlink(missing_ok=True)
    if args.nproc is not None:
        if "WORLD_SIZE" in os.environ:
            raise ValueError("--nproc launches torchrun itself; do not use it under torchrun")
        from horq.nn.training import check_gpus_for, device_kind

        check_gpus_for(device_kind(settings.device, args.nproc), args.nproc)  # before torchrun starts any process
        argv = args.argv[args.argv.index("train") + 1 :]
        return subprocess.call(torchrun_command(args.nproc, _strip_nproc(argv)))
    from horq.heap import keep_freed_memory
    from horq.nn.training import train

    keep_freed_memory()  # the steps reuse their memory instead of faulting in fresh pages (horq/heap.py)
    summary = train(settings).summary
    if summary["rank"] == 0:
        shown = {k: v for k, v in summary.items() if k != "epochs"}
        print(json.dumps(shown, indent=2))
    return 0


def run_eval(args) -> int:
    import torch

    from horq.data import load
    from horq.nn.checkpoint import load_model
    from horq.nn.resume import check_data_fits
    from horq.nn.training import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.checkpoint)
    trained = ckpt.get("args") or {}
    name = args.data or trained.get("data")
    if not name:
        raise ValueError(f"{args.checkpoint} does not record its dataset; name one with --data")
    ds = load(name, args.split, root=args.data_root or trained.get("data_root"))
    check_data_fits(ckpt, ds.x.shape[1:], ds.num_classes, what=f"{args.checkpoint}", data=name)
    x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.y)
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    loss, acc = evaluate(model, x, y)
    print(json.dumps({"checkpoint": args.checkpoint, "data": name, "split": args.split, "n": len(y),
                      "loss": round(loss, 6), "accuracy": round(acc, 6)}, indent=2))
    return 0
