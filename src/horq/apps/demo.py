"""``horq demo`` (what ``make demo`` runs): the main job on an embedded default, in a few minutes on 2 cores.

It trains ``mnist-cnn`` on the embedded 5,000-image MNIST subset at full precision, XNOR (order 1) and
HORQ order 2 with one recipe and seed and prints a table of test accuracy and training time. Then it ships
the HORQ-2 model: exports it to a packed ``.horq`` file, reloads it with the torch-free runtime (native
kernels), and reports the packed size against float32, the runtime's agreement with PyTorch and its accuracy,
and batch-1 latency of the runtime against PyTorch fp32.
"""

from __future__ import annotations

import time
from pathlib import Path

from horq.apps.args import nonnegative_int, positive_int, thread_count
from horq.timing import median_seconds

DEFAULT_ORDERS = (None, 1, 2)


def order_label(order: int | None) -> str:
    if order is None:
        return "full precision"
    return {0: "binary weights (order 0)", 1: "XNOR (order 1)"}.get(order, f"HORQ order {order}")


def register(sub) -> None:
    p = sub.add_parser("demo", help="train FP / XNOR / HORQ-2 on embedded MNIST and compare")
    p.add_argument("--out", default="runs/demo",
                   help="folder for the three runs and model.horq (default runs/demo; a previous demo there is "
                        "replaced)")
    p.add_argument("--model", default="mnist-cnn")
    p.add_argument("--data", default="mnist-5k")
    p.add_argument("--epochs", type=positive_int, default=4)
    p.add_argument("--threads", type=thread_count, default=None)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--limit-train", type=positive_int, default=None)
    p.add_argument("--limit-test", type=positive_int, default=None)
    p.add_argument("--repeats", type=positive_int, default=50, help="timed runs per latency measurement")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from horq.heap import keep_freed_memory
    from horq.nn.training import TrainSettings, train

    keep_freed_memory()  # as `horq train` does (horq/heap.py)
    out = Path(args.out)
    if (out / "model.horq").exists() or any((out / d / "last.pt").exists() for d in ("fp", "order1", "order2")):
        print(f"replacing the previous demo in {out}/", flush=True)
    rows, models, devices = [], {}, set()
    t_all = time.perf_counter()
    for order in DEFAULT_ORDERS:
        label = order_label(order)
        print(f"\n== training {args.model} on {args.data}: {label}", flush=True)
        settings = TrainSettings(
            model=args.model, data=args.data, order=order, epochs=args.epochs, seed=args.seed,
            threads=args.threads, out=str(out / ("fp" if order is None else f"order{order}")),
            limit_train=args.limit_train, limit_test=args.limit_test,
        )
        result = train(settings)
        models[order], summary = result.model, result.summary
        devices.add(summary["device"])
        rows.append((label, summary["final_test_acc"], summary["train_seconds"], settings.out))

    print(f"\n{args.model} on {args.data}, {args.epochs} epochs, seed {args.seed}, trained on "
          f"{', '.join(sorted(devices))} (command: horq demo)")
    print(f"{'model':<26} {'test acc':>9} {'test err':>9} {'train s':>8}")
    for label, acc, secs, _ in rows:
        print(f"{label:<26} {acc * 100:8.2f}% {100 - acc * 100:8.2f}% {secs:8.1f}")
    ship(models[DEFAULT_ORDERS[-1]], models[None], args, out)
    print(f"total {time.perf_counter() - t_all:.0f} s; checkpoints and model.horq under {out}/")
    return 0


def state_dict_bytes(model) -> int:
    """Bytes of the model's float32 state_dict (:func:`horq.sizes.float32_state_bytes`)."""
    from horq.sizes import float32_state_bytes

    return float32_state_bytes(model.state_dict().values())


def ship(horq_model, fp_model, args, out: Path) -> None:
    """Exports the HORQ model, runs it with the torch-free runtime and compares it with PyTorch."""
    import torch

    import horq
    import horq.runtime
    from horq.data import load

    # Trained on CUDA where torch sees a GPU: what ships, and what the runtime is compared with, runs on CPU.
    horq_model, fp_model = horq_model.cpu(), fp_model.cpu()
    test = load(args.data, "test")
    x, y = test.x[: args.limit_test], test.y[: args.limit_test]
    path = out / "model.horq"
    horq.export(horq_model.eval(), path, input_shape=x.shape[1:])
    runtime = horq.runtime.load(path)
    with torch.no_grad():
        torch_pred = horq_model(torch.from_numpy(x)).argmax(1).numpy()
    rt_pred = runtime.predict(x)
    packed, fp32 = path.stat().st_size, state_dict_bytes(horq_model)

    one = x[:1]
    fp_model.eval()
    with torch.no_grad():
        t_fp = median_seconds(lambda: fp_model(torch.from_numpy(one)), repeats=args.repeats, warmup=5)
        t_torch_horq = median_seconds(lambda: horq_model(torch.from_numpy(one)), repeats=args.repeats, warmup=5)
    # Same thread count for both: the runtime's kernels and numpy's BLAS get what torch uses.
    with horq.runtime.num_threads(torch.get_num_threads()):
        t_rt = median_seconds(lambda: runtime(one), repeats=args.repeats, warmup=5)

    print(f"\nshipped {path} with the torch-free runtime (backend {runtime.backend}: {runtime.backend_reason})")
    print(f"  packed file        {packed / 1024:9.1f} KiB  vs float32 state_dict {fp32 / 1024:.1f} KiB "
          f"({fp32 / packed:.1f}x smaller; first and last layers stay float32)")
    rt_acc, torch_acc = (rt_pred == y).mean() * 100, (torch_pred == y).mean() * 100
    print(f"  runtime accuracy   {rt_acc:8.2f}%   PyTorch eval {torch_acc:.2f}%"
          f"   same prediction on {(rt_pred == torch_pred).mean() * 100:.2f}% of {len(y)} test images")
    print(f"  batch-1 latency    runtime {t_rt * 1e3:.3f} ms | PyTorch HORQ-2 eval {t_torch_horq * 1e3:.3f} ms | "
          f"PyTorch fp32 {t_fp * 1e3:.3f} ms (medians of {args.repeats} after warm-up, "
          f"{torch.get_num_threads()} thread(s) each)")
