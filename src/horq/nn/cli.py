"""``horq train`` and ``horq eval``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def parse_order(text: str) -> int | None:
    """CLI spelling of a layer order: ``fp``/``none`` = full precision, or an integer >= 0."""
    if text.lower() in ("fp", "none", "full"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"order must be 'fp' or an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"order must be 'fp' or an integer >= 0, got {text!r}")
    return value


def parse_model_arg(text: str):
    """``KEY=VALUE`` with a number as value (int if it reads as one, else float)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"model option must be KEY=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return key, kind(raw)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"model option {key!r} needs a number, got {raw!r}")


def register(sub) -> None:
    from horq.nn.training import DEVICES, SCHEDULES, TrainSettings

    d = TrainSettings()
    p = sub.add_parser("train", help="train a zoo model at full precision or HORQ order K")
    p.add_argument("--model", default=d.model, help="zoo model: mnist-mlp, mnist-cnn, cifar-vgg")
    p.add_argument("--model-arg", action="append", type=parse_model_arg, default=[], metavar="KEY=VALUE",
                   help="architecture option of the zoo model, repeatable (e.g. width=0.5, hidden=128)")
    p.add_argument("--data", default=d.data, help="dataset: mnist, fashion-mnist, cifar10, mnist-5k, digits")
    p.add_argument("--data-root", default=None, help="folder with the dataset files (default $HORQ_DATA)")
    p.add_argument("--order", type=parse_order, default=d.order, help="fp, 0 (binary weights), 1 (XNOR), K>=2 (HORQ)")
    p.add_argument("--clip", type=float, default=d.clip, help="straight-through clip of the input binarizer")
    p.add_argument("--binary-first-last", action="store_true", help="binarize the first and last layers too")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads per process")
    p.add_argument("--out", default=d.out, help="run folder: checkpoints and metrics")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init-from", default=None, help="start from the weights of a (full-precision) checkpoint")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--device", choices=DEVICES, default=d.device)
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--nproc", type=int, default=None, help="launch N processes with torchrun on this machine")
    p.set_defaults(func=_train)

    e = sub.add_parser("eval", help="test accuracy and loss of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--data", default=None, help="dataset (default: the one it was trained on)")
    e.add_argument("--data-root", default=None)
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--threads", type=int, default=None)
    e.set_defaults(func=_eval)


def settings_from_args(args):
    from horq.nn.training import TrainSettings

    return TrainSettings(
        model=args.model, model_args=dict(args.model_arg), data=args.data, data_root=args.data_root, order=args.order, clip=args.clip,
        keep_first_last_fp=not args.binary_first_last, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
        threads=args.threads, out=args.out, resume=args.resume, init_from=args.init_from,
        limit_train=args.limit_train, limit_test=args.limit_test, device=args.device, sync_bn=args.sync_bn,
        progress=not args.no_progress,
    )


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


def _train(args) -> int:
    if args.nproc is not None:
        if args.nproc < 1:
            raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
        if "WORLD_SIZE" in os.environ:
            raise ValueError("--nproc launches torchrun itself; do not use it under torchrun")
        argv = args.argv[args.argv.index("train") + 1 :]
        return subprocess.call(torchrun_command(args.nproc, _strip_nproc(argv)))
    from horq.nn.training import train

    settings = settings_from_args(args)
    summary = train(settings)
    if summary["rank"] == 0:
        shown = {k: v for k, v in summary.items() if k not in ("epochs", "model")}
        print(json.dumps(shown, indent=2))
    return 0


def _eval(args) -> int:
    import torch

    from horq.data import load
    from horq.nn.checkpoint import load_model
    from horq.nn.training import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.checkpoint)
    name = args.data or ckpt["args"]["data"]
    ds = load(name, args.split, root=args.data_root or ckpt["args"].get("data_root"))
    x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.y)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    loss, acc = evaluate(model, x, y)
    print(json.dumps({"checkpoint": args.checkpoint, "data": name, "split": args.split, "n": len(y),
                      "loss": round(loss, 6), "accuracy": round(acc, 6)}, indent=2))
    return 0

