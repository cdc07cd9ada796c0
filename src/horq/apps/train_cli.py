"""Arguments of ``horq train`` and ``horq eval``, defined without importing torch (so ``horq --help`` and
the runtime commands start without it); the commands themselves run in :mod:`horq.apps.train`.

Settings not given on the command line stay absent from the parsed arguments, so the run takes
:class:`horq.nn.training.TrainSettings`' defaults: one place defines them.
"""

from __future__ import annotations

import argparse

from horq.apps.args import (
    nonnegative_float,
    nonnegative_int,
    parse_model_arg,
    parse_order,
    positive_float,
    positive_int,
    thread_count,
)

#: Choices of --schedule and --device (horq.nn.training checks the same; a test keeps them equal).
SCHEDULES = ("cosine", "step", "none")
DEVICES = ("auto", "cpu", "cuda")

RESUME_HELP = (
    "continue the run in OUT from OUT/last.pt. The model, its options, the order, --clip, --binary-first-last "
    "and the data must be those of the run; --epochs, --lr, --weight-decay and --schedule may change: the "
    "learning-rate schedule is then "
    "recomputed for the new values (as if the run had been planned with them from the start) and continues "
    "at the epoch the checkpoint ends at; OUT/metrics.json records the settings of each stretch of epochs "
    "('history') and every epoch's real learning rate. --epochs must exceed the epochs already done."
)


def register(sub) -> None:
    keep = argparse.SUPPRESS  # absent unless given: TrainSettings supplies the default
    p = sub.add_parser(
        "train", help="train a zoo model at full precision or HORQ order K",
        description="Train a zoo model. OUT must be new or empty unless --resume (continue it) or --overwrite "
                    "(replace it) is given; Ctrl-C stops after saying where the last checkpoint is.",
    )
    p.add_argument("--model", default=keep, help="zoo model: mnist-mlp, mnist-cnn (default), cifar-vgg")
    p.add_argument("--model-arg", action="append", type=parse_model_arg, default=[], metavar="KEY=VALUE",
                   help="architecture option of the zoo model, repeatable (e.g. width=0.5, hidden=128)")
    p.add_argument("--data", default=keep, help="dataset: mnist, fashion-mnist, fashion-mnist-32 (padded to "
                   "32x32), cifar10, mnist-5k (default), digits")
    p.add_argument("--data-root", default=keep, help="folder with the dataset files (default $HORQ_DATA)")
    p.add_argument("--order", type=parse_order, default=keep,
                   help="fp, 0 (binary weights), 1 (XNOR), K>=2 (HORQ; default 2)")
    p.add_argument("--clip", type=nonnegative_float, default=keep, help="straight-through clip of the input binarizer")
    p.add_argument("--binary-first-last", action="store_true", help="binarize the first and last layers too")
    p.add_argument("--orders", default=keep, metavar="FILE.json",
                   help="per-layer orders: a HORQConfig.to_dict() JSON (as `horq analyze frontier` writes) or "
                        "{\"overrides\": {LAYER: ORDER}}; its order/clip/keep_first_last_fp, when present, apply "
                        "unless given on the command line, and must not contradict it")
    p.add_argument("--epochs", type=positive_int, default=keep, help="total epochs of the run (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=keep, help="per process (default 64)")
    p.add_argument("--lr", type=positive_float, default=keep, help="initial learning rate (default 0.002)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=keep)
    p.add_argument("--schedule", choices=SCHEDULES, default=keep, help="learning-rate schedule (default cosine)")
    p.add_argument("--seed", type=nonnegative_int, default=keep)
    p.add_argument("--threads", type=thread_count, default=keep, help="torch intra-op threads per process")
    p.add_argument("--out", default=keep, help="run folder: checkpoints and metrics (default runs/default)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help=RESUME_HELP)
    how.add_argument("--overwrite", action="store_true",
                     help="replace the run already in OUT (its checkpoints and metrics)")
    p.add_argument("--init-from", default=keep, metavar="CHECKPOINT",
                   help="start from the weights of a (full-precision) checkpoint of the same model and data shape")
    p.add_argument("--limit-train", type=positive_int, default=keep, help="use only the first N training images")
    p.add_argument("--limit-test", type=positive_int, default=keep, help="use only the first N test images")
    p.add_argument("--holdout", type=positive_int, default=keep, metavar="N",
                   help="leave out of training the N held-out samples that `horq analyze frontier --holdout N` "
                        "measures on (a fixed seeded subset of the training split)")
    p.add_argument("--device", choices=DEVICES, default=keep)
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--no-native", action="store_true",
                   help="train HORQ layers on the torch path (default on CPU: the native XNOR-popcount kernels)")
    p.add_argument("--channels-last", action="store_true",
                   help="model and batches in PyTorch's channels_last (NHWC) memory format: faster steps for "
                        "convolutional models on CPU (docs/TRAINING.md); the results differ only by float rounding")
    p.add_argument("--nproc", type=positive_int, default=None, help="launch N processes with torchrun on this machine")
    p.set_defaults(func=_train)

    e = sub.add_parser("eval", help="test accuracy and loss of a checkpoint")
    e.add_argument("checkpoint", help="checkpoint written by `horq train` (for a .horq file use `horq run`)")
    e.add_argument("--data", default=None, help="dataset (default: the one it was trained on)")
    e.add_argument("--data-root", default=None)
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--limit", type=positive_int, default=None, help="use only the first N samples")
    e.add_argument("--threads", type=thread_count, default=None)
    e.set_defaults(func=_eval)


def _train(args) -> int:
    from horq.apps.train import run_train  # torch

    return run_train(args)


def _eval(args) -> int:
    from horq.apps.train import run_eval  # torch

    return run_eval(args)
