"""OpenVINO's binary convolution against numpy per input channel count (default), or where the OpenVINO twins of a
yardstick model spend a call (--profile MODEL). The twins themselves: horq/apps/openvino_twin.py.

    .venv/bin/python benchmarks/openvino_twin.py
    .venv/bin/python benchmarks/openvino_twin.py --profile resnet18-32 [--threads 1] [--repeats 50]
"""

from __future__ import annotations

import numpy as np

from horq import runtime as rt
from horq.apps.openvino_twin import _ov, channel_check, infer_request


def profile(model_key: str, repeats: int = 50, threads: int = 1) -> str:
    """Where OpenVINO's twins of a yardstick model (bench_yardstick_models.MODELS, order 1, batch 1) spend a call:
    OpenVINO's per-node counters (PERF_COUNT) summed per node type and execution kernel, medians of ``repeats``
    calls, beside horq's own profile of the same file (Model.profile)."""
    import statistics
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_yardstick_models as ym

    from horq import format as hformat

    ov, _ = _ov()
    name, shape, classes = ym.MODELS[model_key]
    with tempfile.TemporaryDirectory() as tmp:
        horq_model = ym.horq_models(ym.float_model(name, shape, classes), shape, tmp, orders=(1,))[1]
        hfile = hformat.load(Path(tmp) / "o1.horq")
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    lines = [f"{model_key}, order 1, batch 1, {threads} thread(s), OpenVINO {ov.get_version()}"]
    layer_ms: dict = {}  # (beta, node name) -> median ms of the twin's BinaryConvolution / FakeQuantize nodes
    with rt.num_threads(threads):
        for beta in (True, False):
            req = infer_request(hfile, 1, threads, beta=beta, perf_count=True)
            per: dict = {}
            per_node: dict = {}
            for _ in range(repeats):
                req.infer([x])
                sums: dict = {}
                for info in req.profiling_info:
                    key = (info.node_type, info.exec_type)
                    ms = info.real_time.total_seconds() * 1e3
                    sums[key] = sums.get(key, 0.0) + ms
                    if info.node_type in ("BinaryConvolution", "FakeQuantize"):
                        per_node.setdefault(info.node_name, []).append(ms)
                for key, ms in sums.items():
                    per.setdefault(key, []).append(ms)
            med = {key: statistics.median(v) for key, v in per.items()}
            layer_ms.update({(beta, k): statistics.median(v) for k, v in per_node.items()})
            total = sum(med.values())
            lines += ["", f"OpenVINO twin ({'binary, with betas' if beta else 'plain binary'}): nodes sum to "
                      f"{total:.3f} ms (medians of {repeats} calls)", f"{'node type / kernel':<38} {'ms':>7} {'%':>5}"]
            lines += [f"{f'{t} / {e}':<38} {ms:7.3f} {100 * ms / total:5.1f}"
                      for (t, e), ms in sorted(med.items(), key=lambda kv: -kv[1]) if ms >= 0.0005]
        prof = horq_model.profile(x, repeats=repeats)
        lines += ["", "horq order 1 (Model.profile):", prof.format()]
    lines += ["", *_layer_table(prof, layer_ms)]
    return "\n".join(lines)


def _layer_table(prof, layer_ms: dict) -> list:
    """Binary layer by binary layer: horq's step (its input quantization and fused epilogue included) beside the
    twins' BinaryConvolution plus the FakeQuantize that binarizes its input (the twin names both after the layer's
    node, horq.apps.openvino_twin); the beta map's nodes (ReduceMean, AvgPool, their products) are not in the rows."""
    head = (f"{'binary layer':<22} {'output':>14} {'horq o1':>8} {'OV binary':>10} {'OV plain':>9} "
            f"{'OV plain / horq':>15}")
    out = ["Per binary layer, ms (OpenVINO: BinaryConvolution + its FakeQuantize; medians):", head]
    for node in prof.nodes:
        if node.binary_macs is None:
            continue
        name = next((n for n in (node.name, *node.fused) if (False, n) in layer_ms), None)
        if name is None:
            continue
        ov = {beta: layer_ms[(beta, name)] + layer_ms.get((beta, f"{name}/binarize"), 0.0) for beta in (True, False)
              if (beta, name) in layer_ms}
        shape = "x".join(map(str, node.shape))
        cells = [f"{ov[b]:.3f}" if b in ov else "n/a" for b in (True, False)]
        ratio = f"{ov[False] / node.ms:.2f}" if False in ov and node.ms > 0 else "n/a"
        out.append(f"{name:<22} {shape:>14} {node.ms:8.3f} {cells[0]:>10} {cells[1]:>9} {ratio:>15}")
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="OpenVINO's BinaryConvolution against numpy per input channel count "
                                 "(default), or where the twins of a yardstick model spend a call (--profile)")
    ap.add_argument("--profile", metavar="MODEL", help="a key of bench_yardstick_models.MODELS, e.g. resnet18-32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    if args.profile:
        print(profile(args.profile, args.repeats, args.threads))
    else:
        ov_version = _ov()[0].get_version()
        print(f"OpenVINO {ov_version}: one BinaryConvolution (FakeQuantize levels 2 in front, u1 weights) against "
              "numpy")
        for c, k, bad, total in channel_check():
            print(f"C_in {c:3d}, {k}x{k}: {bad} of {total} outputs differ")
