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
    with rt.num_threads(threads):
        for beta in (True, False):
            req = infer_request(hfile, 1, threads, beta=beta, perf_count=True)
            per: dict = {}
            for _ in range(repeats):
                req.infer([x])
                sums: dict = {}
                for info in req.profiling_info:
                    key = (info.node_type, info.exec_type)
                    sums[key] = sums.get(key, 0.0) + info.real_time.total_seconds() * 1e3
                for key, ms in sums.items():
                    per.setdefault(key, []).append(ms)
            med = {key: statistics.median(v) for key, v in per.items()}
            total = sum(med.values())
            lines += ["", f"OpenVINO twin ({'binary, with betas' if beta else 'plain binary'}): nodes sum to "
                      f"{total:.3f} ms (medians of {repeats} calls)", f"{'node type / kernel':<38} {'ms':>7} {'%':>5}"]
            lines += [f"{f'{t} / {e}':<38} {ms:7.3f} {100 * ms / total:5.1f}"
                      for (t, e), ms in sorted(med.items(), key=lambda kv: -kv[1]) if ms >= 0.0005]
        lines += ["", "horq order 1 (Model.profile):", horq_model.profile(x, repeats=repeats).format()]
    return "\n".join(lines)


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
