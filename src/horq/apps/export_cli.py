"""``horq export`` and ``horq summary``: write and inspect packed ``.horq`` files."""

from __future__ import annotations

import json
import os


def register(sub) -> None:
    p = sub.add_parser("export", help="export a training checkpoint to a packed .horq file")
    p.add_argument("checkpoint", help="checkpoint written by `horq train`")
    p.add_argument("-o", "--output", required=True,
                   help="destination .horq file (written atomically; never the checkpoint itself or another one)")
    p.add_argument("--float16", action="store_true",
                   help="store float parameters in float16 (smaller file; the runtime still computes in float32)")
    p.set_defaults(func=_export)

    p = sub.add_parser("summary", help="per-layer size and cost table of a .horq file or a checkpoint")
    p.add_argument("model", help=".horq file, or a training checkpoint (needs PyTorch)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_summary)


def _jsonable(v):
    from horq.format import canonical_json

    try:
        canonical_json(v)
        return True
    except (TypeError, ValueError):
        return False


def check_export_paths(checkpoint, output) -> None:
    """Refuses an export that would destroy a checkpoint: ``output`` naming the input, or another checkpoint.

    Raises:
        ValueError: naming the path and why.
    """
    from horq.fileio import same_file
    from horq.format import file_kind

    if same_file(checkpoint, output):
        raise ValueError(f"-o {output} is the checkpoint being exported; give the packed model another name "
                         f"(e.g. -o {os.path.splitext(str(output))[0]}.horq)")
    if os.path.isfile(output) and file_kind(output) == "checkpoint":
        raise ValueError(f"-o {output} is a training checkpoint; export would replace it. Give another name, "
                         f"or delete it first if you mean to")


def _export(args) -> int:
    check_export_paths(args.checkpoint, args.output)
    from horq.apps.summary import summarize
    from horq.nn.checkpoint import load_model  # torch: only this command needs it
    from horq.nn.export import export

    model, ckpt = load_model(args.checkpoint)
    info = {k: ckpt.get(k) for k in ("model_name", "model_kwargs", "config", "epoch")}
    info = {k: v for k, v in info.items() if v is not None and _jsonable(v)}
    export(model, args.output, input_shape=ckpt["model_kwargs"]["in_shape"], info=info,
           float_dtype="float16" if args.float16 else "float32")
    summ = summarize(args.output)
    ratio = f", {summ.compression:.1f}x smaller than the float32 state_dict" if summ.compression else ""
    print(f"wrote {args.output} ({os.path.getsize(args.output):,} bytes{ratio})")
    return 0


def _summary(args) -> int:
    from horq.apps.summary import format_summary, summarize
    from horq.format import HorqFormatError

    if not os.path.isfile(args.model):
        raise FileNotFoundError(2, "no such file" if not os.path.isdir(args.model) else "is a folder", args.model)
    try:
        summ = summarize(args.model)
    except HorqFormatError as exc:
        raise ValueError(f"{args.model}: {exc}") from exc
    if args.json:
        print(json.dumps({"rows": summ.rows, "file_bytes": summ.file_bytes, "state_dict_bytes": summ.state_dict_bytes,
                          "compression": summ.compression, "speedup": summ.speedup}, indent=1))
    else:
        print(format_summary(summ))
    return 0
