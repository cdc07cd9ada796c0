"""``horq run`` (accuracy on a dataset, or predictions for an array) and ``horq bench model|kernels``."""

from __future__ import annotations

import time

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("run", help="run a packed .horq model: accuracy on a dataset or predictions for an array")
    p.add_argument("model", help=".horq file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="NAME", help="dataset name for horq.data.load (prints accuracy)")
    src.add_argument("--input", metavar="X.npy", help="float32 array (N, *input_shape), standardized like the data")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N samples")
    p.add_argument("-o", "--output", metavar="OUT.npy", help="with --input: save the float32 outputs (logits) here")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy", "reference"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="threads of the native kernels and numpy's BLAS")
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
    k.set_defaults(func=_bench_kernels)
    p = bsub.add_parser("model", help="time a .horq model on the runtime against PyTorch fp32 on the same graph")
    p.add_argument("model", help=".horq file")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes (default: 1 64)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--backend", default="native", choices=("auto", "native", "numpy"))
    p.set_defaults(func=_bench)


def _run(args) -> int:
    import horq.runtime as rt

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    model = rt.load(args.model, backend=args.backend)
    if args.threads is not None:
        _set_threads(model, args.threads)
    if args.data:
        import horq.data

        if args.output:
            raise ValueError("-o/--output goes with --input (with --data the command prints the accuracy)")
        ds = horq.data.load(args.data, args.split)
        x, y = ds.x, ds.y
        if args.limit is not None:
            x, y = x[: args.limit], y[: args.limit]
        t0 = time.perf_counter()
        pred = model.predict(x, batch_size=args.batch_size)
        dt = time.perf_counter() - t0
        correct = int((pred == y).sum())
        print(f"{args.data}/{args.split}: accuracy {correct / len(y):.2%} ({correct}/{len(y)}) "
              f"backend {model.backend}, {dt:.2f} s ({len(y) / dt:,.0f} samples/s)")
        return 0
    try:
        x = np.load(args.input, allow_pickle=False)
    except (EOFError, ValueError) as exc:  # not an .npy file, or an object array
        raise ValueError(f"{args.input}: cannot read a numpy array ({exc})") from exc
    if x.shape == tuple(model.input_shape):
        x = x[None]  # one sample
    if args.limit is not None:
        x = x[: args.limit]
    out = np.concatenate([model(x[i : i + args.batch_size]) for i in range(0, len(x), args.batch_size)])
    if args.output:
        np.save(args.output, out)
    pred = out.argmax(axis=1) if out.ndim == 2 else out
    print(" ".join(map(str, pred.tolist())) if out.ndim == 2 else f"output shape {out.shape}")
    return 0


def _set_threads(model, n: int) -> None:
    from horq.runtime.threads import set_num_threads

    set_num_threads(n)


def _bench(args) -> int:
    from horq.runtime.bench import bench_model, format_bench

    rows = bench_model(args.model, batches=args.batch, threads=args.threads, repeats=args.repeats,
                       warmup=args.warmup, backend=args.backend)
    print(format_bench(rows))
    return 0


def _bench_kernels(args) -> int:
    from horq.kernels.bench import run

    run(quick=args.quick, skip_bgemm=args.skip_bgemm, json_path=args.json, doc_path=args.doc)
    return 0
