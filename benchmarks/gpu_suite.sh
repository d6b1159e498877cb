#!/usr/bin/env bash
# One command for a GPU session: build the extension, run the GPU tests, run every benchmark, and
# append dated tables (device, driver, torch, triton, git commit) to benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_suite.sh            # about 6 to 8 minutes on an H100
#   RESULTS=/tmp/r.md bash benchmarks/gpu_suite.sh
#
# Each stage has its own time limit so that the whole suite ends within 9 minutes; a stage that
# fails or runs out of time is reported and the suite goes on. Run it from the repository root.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-benchmarks/RESULTS.md}
OUT_DIR=${OUT:-/tmp/gpu_suite}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} MAX_JOBS=${MAX_JOBS:-16}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"9.0"}   # build only for the card at hand: faster
status=0

stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s)"
    local started=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    local code=${PIPESTATUS[0]}
    echo "=== $name: exit $code after $((SECONDS - started))s"
    [ "$code" -eq 0 ] || status=1
}

stage build 240 python -m pip install --no-build-isolation --no-deps -q -e .
stage info 60 python -m swiftcuda info

{
    echo
    echo "## GPU suite, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
    echo "- torch $(python -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'),"\
         "triton $(python -c 'import triton; print(triton.__version__)' 2>/dev/null || echo none),"\
         "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >> "$RESULTS"

stage gpu_tests 180 python -m pytest -q -x -p no:cacheprovider \
    tests/ops tests/test_segmenter.py tests/test_engine_backends.py -k "cuda or graph or triton"
stage bench_memory_read 90 python benchmarks/bench_memory_read.py --device cuda --dtypes fp32,fp16 --no-memory --markdown "$RESULTS"
stage bench_memory_update 60 python benchmarks/bench_memory_update.py --device cuda --dtypes fp32,fp16 --no-memory --markdown "$RESULTS"
stage bench_rsp 30 python benchmarks/bench_rsp.py --device cuda --no-memory --markdown "$RESULTS"
stage bench_fps 150 python benchmarks/bench_fps.py --device cuda --objects 1,2,3 --frames 60 --weights "${WEIGHTS:-demo}" --markdown "$RESULTS"

echo "results appended to $RESULTS; logs in $OUT_DIR"
exit $status
