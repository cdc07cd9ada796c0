"""``horq demo`` (what ``make demo`` runs): the main job on an embedded default, in a few minutes on 2 cores.

It trains ``mnist-cnn`` on the embedded 5,000-image MNIST subset at full precision, XNOR (order 1) and
HORQ order 2 with one recipe and seed, then prints a table of test accuracy and training time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_ORDERS = (None, 1, 2)


def order_label(order: int | None) -> str:
    if order is None:
        return "full precision"
    return {0: "binary weights (order 0)", 1: "XNOR (order 1)"}.get(order, f"HORQ order {order}")


def register(sub) -> None:
    p = sub.add_parser("demo", help="train FP / XNOR / HORQ-2 on embedded MNIST and compare")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--model", default="mnist-cnn")
    p.add_argument("--data", default="mnist-5k")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from horq.nn.training import TrainSettings, train

    out = Path(args.out)
    rows = []
    t_all = time.perf_counter()
    for order in DEFAULT_ORDERS:
        label = order_label(order)
        print(f"\n== training {args.model} on {args.data}: {label}", flush=True)
        settings = TrainSettings(
            model=args.model, data=args.data, order=order, epochs=args.epochs, seed=args.seed,
            threads=args.threads, out=str(out / ("fp" if order is None else f"order{order}")),
            limit_train=args.limit_train, limit_test=args.limit_test,
        )
        summary = train(settings)
        rows.append((label, summary["final_test_acc"], summary["train_seconds"], settings.out))

    print(f"\n{args.model} on {args.data}, {args.epochs} epochs, seed {args.seed} (command: horq demo)")
    print(f"{'model':<26} {'test acc':>9} {'test err':>9} {'train s':>8}")
    for label, acc, secs, _ in rows:
        print(f"{label:<26} {acc * 100:8.2f}% {100 - acc * 100:8.2f}% {secs:8.1f}")
    print(f"total {time.perf_counter() - t_all:.0f} s; checkpoints under {out}/")
    return 0
