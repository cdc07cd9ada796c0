"""``horq experiment accuracy`` and ``horq analyze residual|speedup|storage|frontier`` (see docs/RESULTS.md)."""

from __future__ import annotations

import argparse

from horq.apps.args import (
    nonnegative_float,
    nonnegative_int,
    parse_model_arg,
    positive_float,
    positive_int,
    thread_count,
)
from horq.apps.experiments.common import parse_order
from horq.data.registry import DATASETS as REGISTRY

DATASETS = tuple(REGISTRY)


def _order_arg(text: str):
    try:
        return parse_order(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub) -> None:
    """Adds ``experiment`` and ``analyze`` (both registered from this one module)."""
    e = sub.add_parser("experiment", help="paper reproduction experiments")
    esub = e.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    esub.required = True
    a = esub.add_parser("accuracy", help="train one architecture at FP and orders 0-4; JSON, table, curves")
    a.add_argument("--data", required=True, choices=DATASETS)
    a.add_argument("--data-root", default=None, help="folder with the dataset files (default $HORQ_DATA)")
    a.add_argument("--model", default=None, help="zoo model (default: cifar-vgg for cifar10, else mnist-cnn)")
    a.add_argument("--model-arg", action="append", type=parse_model_arg, default=[], metavar="KEY=VALUE",
                   help="architecture option of the zoo model, repeatable (e.g. width=0.5)")
    a.add_argument("--epochs", type=positive_int, default=3)
    a.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0])
    a.add_argument("--orders", type=_order_arg, nargs="+", default=[None, 0, 1, 2, 3, 4],
                   help="fp and/or integer orders (default: fp 0 1 2 3 4)")
    a.add_argument("--limit-train", type=positive_int, default=None, help="use only the first N training images")
    a.add_argument("--limit-test", type=positive_int, default=None, help="use only the first N test images")
    a.add_argument("--batch-size", type=positive_int, default=64)
    a.add_argument("--lr", type=positive_float, default=2e-3)
    a.add_argument("--threads", type=thread_count, default=None, help="torch threads")
    a.add_argument("--out", required=True, help="output folder")
    a.set_defaults(func=_accuracy)

    an = sub.add_parser("analyze", help="residual error, speedup and storage analyses")
    asub = an.add_subparsers(dest="analysis", metavar="ANALYSIS")
    asub.required = True
    r = asub.add_parser("residual", help="||r_K||/||x|| of each binary layer's input columns, K = 1..4")
    r.add_argument("checkpoint")
    r.add_argument("--data", default=None, choices=DATASETS, help="default: the checkpoint's dataset")
    r.add_argument("--data-root", default=None)
    r.add_argument("--limit", type=positive_int, default=256, help="test images fed through the model")
    r.add_argument("--max-order", type=positive_int, default=4)
    r.add_argument("--out", required=True)
    r.set_defaults(func=_residual)

    s = asub.add_parser("speedup", help="cost model and measured native conv vs fp32 conv speedups")
    s.add_argument("--quick", action="store_true", help="a subset of the sweep with fewer repeats")
    s.add_argument("--kernel-sizes", type=positive_int, nargs="+", default=None)
    s.add_argument("--channels", type=positive_int, nargs="+", default=None)
    s.add_argument("--orders", type=positive_int, nargs="+", default=None)
    s.add_argument("--out-size", type=positive_int, default=16, help="output height = width")
    s.add_argument("--model-only", action="store_true", help="the cost model only, no measurement")
    s.add_argument("--rebuild", action="store_true", help="rewrite OUT's table and plots from OUT/speedup.json")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_speedup)

    st = asub.add_parser("storage", help="bytes of a model per order: packed vs float32")
    st.add_argument("--model", action="append", required=True, help="zoo model (repeatable)")
    st.add_argument("--data", default="mnist", choices=DATASETS, help="gives the input shape and classes")
    st.add_argument("--data-root", default=None)
    st.add_argument("--orders", type=_order_arg, nargs="+", default=[None, 0, 1, 2, 3, 4])
    st.add_argument("--all-binary", action="store_true",
                    help="binarize the first and last layers too (default: they stay full precision)")
    st.add_argument("--out", required=True)
    st.set_defaults(func=_storage)

    f = asub.add_parser("frontier", help="accuracy-latency frontier of per-layer orders; writes --orders JSON",
                        description="Per-layer sensitivity on a held-out split of the training data (the last "
                                    "--holdout samples; never the test split), per-layer latency on the native "
                                    "runtime, a search over per-layer orders, the Pareto frontier and each "
                                    "frontier point's orders as JSON for `horq train --orders FILE`.")
    f.add_argument("checkpoint")
    f.add_argument("--data", default=None, choices=DATASETS, help="default: the checkpoint's dataset")
    f.add_argument("--data-root", default=None)
    f.add_argument("--holdout", type=positive_int, default=1000,
                   help="held-out samples: the last N of the training split (default 1000)")
    f.add_argument("--orders", type=positive_int, nargs="+", default=[1, 2, 3], help="orders to choose from")
    f.add_argument("--max-drop", type=nonnegative_float, default=0.5,
                   help="chosen point: the fastest within this many accuracy points of the checkpoint's own")
    f.add_argument("--max-candidates", type=positive_int, default=729,
                   help="search every assignment up to this many, greedy beyond")
    f.add_argument("--rounds", type=positive_int, default=300,
                   help="profiler runs per uniform-order model (in bursts of 10, round-robin)")
    f.add_argument("--min-seconds", type=positive_float, default=1.0,
                   help="whole-model timing: at least this long per model")
    f.add_argument("--threads", type=thread_count, default=None, help="torch threads (accuracy passes)")
    f.add_argument("--out", required=True)
    f.set_defaults(func=_frontier)

    fc = asub.add_parser("frontier-check", help="test accuracy and measured latency of models with per-layer orders",
                         description="After fine-tuning frontier points: each checkpoint's test accuracy (PyTorch "
                                     "and its exported file on the native runtime) and whole-model latency (batch "
                                     "1, 1 thread), all timed round-robin in one process.")
    fc.add_argument("checkpoints", nargs="+")
    fc.add_argument("--labels", nargs="+", default=None, help="one name per checkpoint (default: its folder)")
    fc.add_argument("--data-root", default=None)
    fc.add_argument("--min-seconds", type=positive_float, default=3.0, help="timing: at least this long per model")
    fc.add_argument("--threads", type=thread_count, default=None, help="torch threads (accuracy passes)")
    fc.add_argument("--out", required=True)
    fc.set_defaults(func=_frontier_check)


def _accuracy(args) -> int:
    from horq.apps.experiments.accuracy import run_accuracy

    result = run_accuracy(data=args.data, out=args.out, model=args.model, epochs=args.epochs, seeds=args.seeds,
                          orders=args.orders, limit_train=args.limit_train, limit_test=args.limit_test,
                          data_root=args.data_root, batch_size=args.batch_size, lr=args.lr,
                          threads=args.threads, model_args=dict(args.model_arg), argv=args.argv)
    from horq.apps.experiments.accuracy import markdown

    print(markdown(result))
    return 0


def _residual(args) -> int:
    from horq.apps.experiments.residual import markdown, run_residual

    result = run_residual(args.checkpoint, out=args.out, data=args.data, data_root=args.data_root,
                          limit=args.limit, max_order=args.max_order, argv=args.argv)
    print(markdown(result))
    return 0


def _speedup(args) -> int:
    from horq.apps.experiments.speedup import markdown, rebuild, run_speedup

    if args.rebuild:
        print(markdown(rebuild(args.out)))
        return 0
    result = run_speedup(out=args.out, quick=args.quick, kernel_sizes=args.kernel_sizes, channels=args.channels,
                         orders=args.orders, out_size=args.out_size, measure=not args.model_only, argv=args.argv)
    print(markdown(result))
    return 0


def _storage(args) -> int:
    from horq.apps.experiments.storage import markdown, run_storage

    result = run_storage(models=args.model, data=args.data, data_root=args.data_root, orders=args.orders,
                         all_binary=args.all_binary, out=args.out, argv=args.argv)
    print(markdown(result))
    return 0


def _torch_threads(n: int | None) -> None:
    """PyTorch's thread count for the commands that evaluate checkpoints (None: its default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def _frontier(args) -> int:
    from horq.apps.experiments.frontier import markdown, run_frontier

    _torch_threads(args.threads)
    result = run_frontier(args.checkpoint, out=args.out, data=args.data, data_root=args.data_root,
                          holdout=args.holdout, orders=args.orders, max_drop=args.max_drop,
                          max_candidates=args.max_candidates, rounds=args.rounds, min_seconds=args.min_seconds,
                          argv=args.argv)
    print(markdown(result))
    return 0


def _frontier_check(args) -> int:
    from horq.apps.experiments.frontier_check import markdown, run_check

    _torch_threads(args.threads)
    result = run_check(args.checkpoints, out=args.out, labels=args.labels, data_root=args.data_root,
                       min_seconds=args.min_seconds, argv=args.argv)
    print(markdown(result))
    return 0
