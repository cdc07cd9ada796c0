"""``horq run`` (accuracy on a dataset, or predictions for an array) and ``horq bench model|kernels|training``."""

from __future__ import annotations

import os
import time

import numpy as np

from horq.apps.args import nonnegative_int, positive_int, section_name, thread_count

#: The subcommands of ``horq bench``, and the help flags, which a file name must not shadow.
BENCH_WORDS = ("model", "kernels", "training", "-h", "--help")


def expand_bench_shortcut(argv: list[str]) -> list[str]:
    """``horq bench FILE.horq ...`` means ``horq bench model FILE.horq ...`` (the README's form). argparse
    chooses a subcommand by its name, never by a file, so the shortcut is expanded before parsing."""
    if (len(argv) >= 2 and argv[0] == "bench" and argv[1] not in BENCH_WORDS
            and any(a.endswith(".horq") for a in argv[1:])):
        return [argv[0], "model", *argv[1:]]
    return argv


def register(sub) -> None:
    p = sub.add_parser("run", help="run a packed .horq model: accuracy on a dataset or predictions for an array")
    p.add_argument("model", help=".horq file (a training checkpoint goes to `horq eval`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="NAME", help="dataset name for horq.data.load (prints accuracy)")
    src.add_argument("--input", metavar="X.npy",
                     help="float32 array (N, *input_shape) or one sample, saved with np.save, standardized like "
                          "the data")
    p.add_argument("--split", default="test", choices=("train", "test"), help="dataset split (default: test)")
    p.add_argument("--limit", type=positive_int, default=None, help="use only the first N samples")
    p.add_argument("-o", "--output", metavar="OUT.npy", help="with --input: save the float32 outputs (logits) here")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy", "reference"))
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--threads", type=thread_count, default=None,
                   help="threads of the native kernels and numpy's BLAS")
    p.set_defaults(func=_run)

    bench = sub.add_parser("bench", help="benchmarks: a .horq model, or the native kernels")
    bsub = bench.add_subparsers(dest="what", metavar="WHAT")
    bsub.required = True
    k = bsub.add_parser("kernels", help="binary GEMM and HORQ conv layers against PyTorch fp32 and int8")
    k.add_argument("--quick", action="store_true", help="few repeats")
    k.add_argument("--skip-bgemm", action="store_true")
    k.add_argument("--json", default=None, help="write the results as JSON here")
    k.add_argument("--doc", default=None,
                   help="markdown file whose '<!-- bench:begin -->' ... '<!-- bench:end -->' section gets the tables")
    k.add_argument("--section", default="bench", type=section_name,
                   help="the name in the doc's markers instead of 'bench' (one section per machine)")
    k.set_defaults(func=_bench_kernels)
    p = bsub.add_parser("model", help="time a .horq model on the runtime (and PyTorch fp32 on the same graph, "
                                      "if PyTorch is installed)")
    p.add_argument("model", help=".horq file")
    p.add_argument("--batch", type=positive_int, nargs="+", default=[1, 64], help="batch sizes (default: 1 64)")
    p.add_argument("--threads", type=thread_count, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed runs per configuration (median reported)")
    p.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed runs first")
    p.add_argument("--backend", default="native", choices=("auto", "native", "numpy"))
    p.add_argument("--profile", action="store_true",
                   help="time every node instead (first --batch and --threads value): per-node and per-op tables "
                        "with each binary layer's binary MAC/s")
    p.add_argument("--openvino", action="store_true",
                   help="also time the same order-1 binary network on OpenVINO's BinaryConvolution (needs the "
                        "openvino package; its output is checked against horq's first)")
    p.set_defaults(func=_bench)
    t = bsub.add_parser("training", help="time one optimizer step (batch 64) per order against full precision, "
                                         "native training path (needs PyTorch)")
    t.add_argument("--models", nargs="+", default=["mnist-cnn", "cifar-vgg", "resnet18"],
                   help="zoo models (inputs: 1x28x28 for mnist-*, else 3x32x32)")
    t.add_argument("--orders", type=positive_int, nargs="+", default=[1, 2, 3], help="HORQ orders (default: 1 2 3)")
    t.add_argument("--threads", type=thread_count, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    t.add_argument("--batch", type=positive_int, default=64)
    t.add_argument("--repeats", type=positive_int, default=5, help="timed steps per configuration (median reported)")
    t.add_argument("--torch-path", action="store_true", help="also time the HORQ layers' torch path")
    t.add_argument("--channels-last", action="store_true",
                   help="every configuration, FP included, in PyTorch's channels_last memory format")
    t.add_argument("--memory", action="store_true",
                   help="also the peak memory (max RSS) of a process training 2 steps, per order, against FP")
    t.set_defaults(func=_bench_training)


def load_model(path, backend: str):
    """``horq.runtime.load`` with errors that name ``path`` (and say what to do with a checkpoint)."""
    import horq.runtime as rt
    from horq.format import HorqFormatError

    if not os.path.isfile(path):
        raise FileNotFoundError(2, "is a folder" if os.path.isdir(path) else "no such file", str(path))
    try:
        return rt.load(path, backend=backend)
    except HorqFormatError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    except ImportError as exc:  # --backend native without the extension
        raise ValueError(f"--backend {backend}: {exc}") from exc


def read_input(path) -> np.ndarray:
    """The array in an ``.npy`` file, with one-line errors for everything else."""
    try:
        x = np.load(path, allow_pickle=False)
    except (EOFError, ValueError) as exc:  # not an .npy file, or an object array
        raise ValueError(f"--input {path}: not a numpy .npy array (save one with np.save)") from exc
    if isinstance(x, np.lib.npyio.NpzFile):
        names = ", ".join(x.files[:5]) or "none"
        x.close()
        raise ValueError(f"--input {path}: an .npz archive (arrays: {names}); save the one input array with np.save")
    if x.ndim == 0:
        raise ValueError(f"--input {path}: holds a single number; expected an array (N, C, H, W) or one sample")
    return x


def _run(args) -> int:
    from horq.fileio import same_file

    if args.output and not args.input:
        raise ValueError("-o/--output goes with --input (with --data the command prints the accuracy)")
    for other, flag in ((args.model, "the model"), (args.input, "--input")):
        if args.output and other and same_file(other, args.output):
            raise ValueError(f"-o {args.output} is {flag}; write the outputs to another file")
    model = load_model(args.model, args.backend)
    if args.threads is not None:
        _set_threads(args.threads)
    if args.data:
        import horq.data

        ds = horq.data.load(args.data, args.split)
        x, y = ds.x, ds.y
        if x.shape[1:] != tuple(model.input_shape):
            raise ValueError(f"{args.model} takes inputs {_fmt(model.input_shape)}, but {args.data} has "
                             f"{_fmt(x.shape[1:])}")
        if args.limit is not None:
            x, y = x[: args.limit], y[: args.limit]
        t0 = time.perf_counter()
        pred = model.predict(x, batch_size=args.batch_size)
        dt = time.perf_counter() - t0
        correct = int((pred == y).sum())
        print(f"{args.data}/{args.split}: accuracy {correct / len(y):.2%} ({correct}/{len(y)}) "
              f"backend {model.backend}, {dt:.2f} s ({len(y) / dt:,.0f} samples/s)")
        return 0
    x = read_input(args.input)
    if x.shape == tuple(model.input_shape):
        x = x[None]  # one sample
    if args.limit is not None:
        x = x[: args.limit]
    try:
        model.check_input(x)
    except ValueError as exc:
        raise ValueError(f"--input {args.input}: {exc}") from exc
    out = np.concatenate([model(x[i : i + args.batch_size]) for i in range(0, len(x), args.batch_size)])
    if args.output:
        from horq.fileio import atomic_open

        with atomic_open(args.output, "wb") as f:  # exactly this name (np.save would append .npy)
            np.save(f, out)
    pred = out.argmax(axis=1) if out.ndim == 2 else out
    print(" ".join(map(str, pred.tolist())) if out.ndim == 2 else f"output shape {out.shape}")
    return 0


def _fmt(shape) -> str:
    return "x".join(map(str, shape))


def _set_threads(n: int) -> None:
    from horq.runtime.threads import set_num_threads

    try:
        set_num_threads(n)
    except RuntimeError as exc:  # the kernels' thread pool could not start them
        raise ValueError(f"--threads {n}: cannot start that many threads ({exc})") from exc


def _bench(args) -> int:
    from horq.apps.bench_model import bench_model, format_bench

    model = load_model(args.model, args.backend)  # one-line errors for a missing or foreign file or backend
    _set_threads(max(args.threads))  # and for a thread count this machine cannot start
    if args.profile:
        from horq.runtime.threads import num_threads

        x = np.random.default_rng(0).standard_normal((args.batch[0], *model.input_shape)).astype(np.float32)
        with num_threads(args.threads[0]):
            prof = model.profile(x, repeats=args.repeats, warmup=args.warmup)
        print(f"{args.model}: {args.threads[0]} thread(s)")
        print(prof.format())
        return 0
    try:
        rows = bench_model(args.model, batches=args.batch, threads=args.threads, repeats=args.repeats,
                           warmup=args.warmup, backend=args.backend, openvino=args.openvino)
    except (ImportError, NotImplementedError) as exc:
        if not args.openvino:
            raise
        raise ValueError(f"--openvino: {exc}") from exc
    print(format_bench(rows))
    return 0


def _bench_training(args) -> int:
    import sys

    from horq.apps.bench_training import bench_training, format_rows, peak_memory_rows  # torch
    from horq.nn.zoo import MODELS

    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    _set_threads(max(args.threads))

    def progress(row):
        print(f"  {row['model']} threads={row['threads']} order={row['order']} {row['path']}: {row['ms']:,.0f} ms",
              file=sys.stderr, flush=True)

    rows = bench_training(args.models, orders=args.orders, threads=args.threads, batch=args.batch,
                          repeats=args.repeats, torch_path=args.torch_path, channels_last=args.channels_last,
                          progress=progress)
    print(format_rows(rows))
    if args.memory:
        print()
        print(peak_memory_rows(args.models, orders=args.orders, batch=args.batch, torch_path=args.torch_path))
    return 0


def _bench_kernels(args) -> int:
    from horq.apps.bench_kernels import run

    run(quick=args.quick, skip_bgemm=args.skip_bgemm, json_path=args.json, doc_path=args.doc, section=args.section)
    return 0
