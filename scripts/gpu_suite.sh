#!/usr/bin/env bash
# One command for a GPU session: check the machine, install what the build lacks (never torch or
# Triton), build the extension so that its CUDA kernels are really in it, run the GPU tests, the
# emulated-CUDA test cases and compute-sanitizer on the real kernels, then every benchmark, and
# append dated tables (device, driver, torch, triton, git commit) to benchmarks/RESULTS.md.
#
#   bash scripts/gpu_suite.sh              # on the GPU machine: about 6 to 9 minutes on an H200
#   bash scripts/gpu_suite.sh --dry-run    # on a CPU (CI): every stage, GPU parts skipped, ~1-3 min
#   RESULTS=/tmp/r.md bash scripts/gpu_suite.sh
#   SUITE_BUDGET=3000 BUILD_LIMIT=2400 bash scripts/gpu_suite.sh --dry-run   # a slow, shared CPU
#
# The GPU machine has no network: what pip would install must be on it already or come as wheels
# in .whl/ (scripts/fetch_gpu_wheels.sh downloads them for its Python 3.12; carry .whl along).
# Elsewhere missing prerequisites come from the package index, with torch and Triton pinned to
# the versions installed so that pip can never replace them.
#
# The whole suite keeps to SUITE_BUDGET seconds (default 560, inside a 10-minute command): each
# stage has its own limit, cut to what is left; a stage that fails or runs out of time is
# reported and the suite goes on, except the checks before the tests: a machine or a build that
# cannot run the CUDA kernels stops the suite at once with one line that starts with "STOP:".
# Run it from anywhere; it works in the repository root.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
    case $arg in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument $arg (use --dry-run or nothing)" >&2; exit 2 ;;
    esac
done

OUT_DIR=${OUT:-/tmp/gpu_suite}
mkdir -p "$OUT_DIR"
if [ "$DRY_RUN" = 1 ]; then
    RESULTS=${RESULTS:-$OUT_DIR/RESULTS.dry-run.md}   # a dry run never touches benchmarks/RESULTS.md
else
    RESULTS=${RESULTS:-benchmarks/RESULTS.md}
fi
PYTHON=${PYTHON:-python}
SUITE_BUDGET=${SUITE_BUDGET:-560}
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
status=0

stop() {  # one clear line, then out
    echo "STOP: $*" >&2
    exit 3
}

stage() {  # stage NAME SECONDS COMMAND...  (limit cut to the suite's remaining budget)
    local name=$1 limit=$2
    shift 2
    local left=$((SUITE_BUDGET - SECONDS))
    if [ "$left" -lt 15 ]; then
        echo "=== $name: SKIPPED, the suite's ${SUITE_BUDGET}s budget is spent"
        status=1
        return 1
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "=== $name (limit ${limit}s)"
    local started=$SECONDS
    if [ "$(type -t "$1")" = function ]; then  # a function of this script: run it in a child bash
        export -f "$1"
        timeout "$limit" bash -c '"$@"' bash "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    else
        timeout "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    fi
    local code=${PIPESTATUS[0]}
    echo "=== $name: exit $code after $((SECONDS - started))s"
    [ "$code" -eq 0 ] || status=1
    return "$code"
}

# --- 1. the machine: Python, torch, Triton, GPU, toolkit (seconds) --------------------------------
TORCH_VERSION=$($PYTHON -c 'import torch; print(torch.__version__)' 2>/dev/null) \
    || stop "torch is not importable with $PYTHON: this suite never installs torch"
TRITON_VERSION=$($PYTHON -c 'import triton; print(triton.__version__)' 2>/dev/null) || TRITON_VERSION=""
# The distributions' versions as pip knows them (torch.__version__ may add a "+cu130" label).
TORCH_DIST=$($PYTHON -c 'from importlib.metadata import version; print(version("torch"))')
TRITON_DIST=$($PYTHON -c 'from importlib.metadata import version; print(version("triton"))' 2>/dev/null) || TRITON_DIST=""
TORCH_CUDA=$($PYTHON -c 'import torch; print(torch.version.cuda or "")')
GPU=$($PYTHON -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "")' 2>/dev/null)
echo "=== machine: $($PYTHON --version 2>&1), torch $TORCH_VERSION (CUDA ${TORCH_CUDA:-none}), triton ${TRITON_VERSION:-none}, GPU ${GPU:-none}, $(nproc) CPUs"
if [ -n "$GPU" ] && [ "$DRY_RUN" = 1 ]; then
    echo "=== --dry-run: a GPU is present but the GPU stages are still skipped"
fi
if [ -z "$GPU" ] && [ "$DRY_RUN" = 0 ]; then
    stop "torch sees no CUDA GPU here (run with --dry-run on a machine without one)"
fi
NVCC_VERSION=""
if [ -x "$CUDA_HOME/bin/nvcc" ]; then
    NVCC_VERSION=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
fi
REQUIRE=cuda   # what `swiftcuda info --require` must find after the build
if [ -z "$NVCC_VERSION" ] || [ ! -f "$CUDA_HOME/include/cuda_runtime.h" ] || [ -z "$TORCH_CUDA" ]; then
    [ "$DRY_RUN" = 1 ] || stop "no usable CUDA toolkit at CUDA_HOME=$CUDA_HOME (nvcc ${NVCC_VERSION:-missing}) or a CPU-only torch: the CUDA kernels cannot be built"
    echo "=== --dry-run: no CUDA toolkit or a CPU-only torch here: the CPU kernels are built and required"
    REQUIRE=extension
elif [ "${NVCC_VERSION%%.*}" != "${TORCH_CUDA%%.*}" ]; then
    stop "CUDA toolkit $NVCC_VERSION at $CUDA_HOME but torch was built with CUDA $TORCH_CUDA: set CUDA_HOME to a matching toolkit"
fi

# --- 2. build prerequisites, never torch or Triton -------------------------------------------------
prerequisites() {
    local missing
    missing=$($PYTHON - <<'EOF'
import importlib.util
from importlib import metadata

needed = {  # requirement to install: module that proves it is there
    "setuptools>=70.1": "setuptools", "wheel": "wheel", "ninja": "ninja", "numpy": "numpy",
    "opencv-python-headless": "cv2", "Pillow": "PIL", "tqdm": "tqdm", "pytest": "pytest",
}
missing = [req for req, module in needed.items() if importlib.util.find_spec(module) is None]
major, minor = (int(p) for p in metadata.version("setuptools").split(".")[:2])
if (major, minor) < (70, 1) and "setuptools>=70.1" not in missing:
    missing.append("setuptools>=70.1")  # older ones have no bdist_wheel of their own
print(" ".join(missing))
EOF
) || return 1
    if [ -z "$missing" ]; then
        echo "build prerequisites present"
        return 0
    fi
    echo "installing: $missing (torch $TORCH_DIST and triton ${TRITON_DIST:-none} pinned)"
    # The installed torch and Triton are named too, so the resolver keeps them and respects
    # their own requirements (torch 2.11 wants setuptools<82).
    local pins=("torch==$TORCH_DIST")
    [ -z "$TRITON_DIST" ] || pins+=("triton==$TRITON_DIST")
    local source=()
    if [ -d .whl ]; then source=(--no-index --find-links .whl); fi
    # shellcheck disable=SC2086
    $PYTHON -m pip install -q "${source[@]}" "${pins[@]}" $missing || return 1
    local after
    after=$($PYTHON -c 'import torch, triton; print(torch.__version__, triton.__version__)' 2>/dev/null \
        || $PYTHON -c 'import torch; print(torch.__version__)')
    [ "$after" = "$(echo $TORCH_VERSION $TRITON_VERSION)" ] || { echo "torch/triton changed: $TORCH_VERSION $TRITON_VERSION -> $after"; return 1; }
}
export PYTHON TORCH_VERSION TRITON_VERSION TORCH_DIST TRITON_DIST
stage prerequisites 120 prerequisites || stop "build prerequisites missing and not installable (no network? carry wheels in .whl/: scripts/fetch_gpu_wheels.sh); see $OUT_DIR/prerequisites.log"

# --- 3. build: the extension, CUDA kernels required where a toolkit is ----------------------------
# pyproject.toml makes this a PEP 660 build in this environment (with torch); objects are kept
# in build/temp-*/ so that a second build (a dry run after CI's install) compiles nothing.
[ "$REQUIRE" = cuda ] && export SWIFTCUDA_CUDA=1
stage build "${BUILD_LIMIT:-300}" $PYTHON -m pip install --no-build-isolation --no-deps -q -e . \
    || stop "the build failed; see $OUT_DIR/build.log"
stage info 60 $PYTHON -m swiftcuda info --require "$REQUIRE" \
    || stop "$(grep -m1 '^swiftcuda info: ' "$OUT_DIR/info.log" || echo "swiftcuda info failed; see $OUT_DIR/info.log")"

# --- 4. tests on the GPU ---------------------------------------------------------------------------
PYTEST=($PYTHON -m pytest -q -p no:cacheprovider)
GPU_TESTS=(tests/ops tests/inference/test_segmenter.py tests/inference/test_engine_backends.py -k "cuda or graph or triton")
if [ "$DRY_RUN" = 1 ]; then
    # Prove the selections collect (and are not empty); CI runs the tests themselves on the CPU.
    stage gpu_tests 120 "${PYTEST[@]}" --collect-only "${GPU_TESTS[@]}"
    stage cuda_emu_cases 120 "${PYTEST[@]}" --collect-only -m cuda_emu tests
else
    stage gpu_tests 180 "${PYTEST[@]}" -x "${GPU_TESTS[@]}"
fi

# --- 5. compute-sanitizer on a small run of every CUDA op -------------------------------------------
SANITIZER=$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")
if [ "$DRY_RUN" = 1 ]; then
    stage sanitizer_target 60 $PYTHON benchmarks/sanitizer_target.py --device cpu
elif [ -x "$SANITIZER" ]; then
    for tool in memcheck racecheck synccheck; do
        stage "sanitizer_$tool" 60 "$SANITIZER" --tool "$tool" --error-exitcode 9 \
            $PYTHON benchmarks/sanitizer_target.py --device cuda
        if grep -q "Device not supported" "$OUT_DIR/sanitizer_$tool.log"; then
            echo "=== compute-sanitizer does not support this machine's device (seen on gVisor): skipped"
            break
        fi
    done
else
    echo "=== compute-sanitizer: not found (looked for $SANITIZER): skipped"
fi

# --- 6. the emulated-CUDA test cases (tests marked cuda_emu) ---------------------------------------
# Their ragged cases, NaN inputs and split counts; on this machine they run under the emulator
# (and on the real kernels wherever tests/cuda_emu provides that). After the sanitizer and the
# first benchmarks when the budget is short: those need the GPU, these do not.
[ "$DRY_RUN" = 1 ] || CUDA_EMU_LATER=1

# --- 7. benchmarks ---------------------------------------------------------------------------------
if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu
    QUICK=(--quick)
    FPS=(--frames 2 --warmup 0 --size 64x64 --objects 1)
else
    DEVICE=cuda
    QUICK=()
    FPS=(--frames 60 --objects 1,2,3)
fi
{
    echo
    echo "## GPU suite$([ "$DRY_RUN" = 1 ] && echo ' (dry run)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
    echo "- torch $TORCH_VERSION (CUDA ${TORCH_CUDA:-none}), triton ${TRITON_VERSION:-none},"\
         "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >> "$RESULTS"
stage bench_memory_read 90 $PYTHON benchmarks/bench_memory_read.py --device $DEVICE --dtypes fp32,fp16 --no-memory "${QUICK[@]}" --markdown "$RESULTS"
stage bench_fps 150 $PYTHON benchmarks/bench_fps.py --device $DEVICE "${FPS[@]}" --weights "${WEIGHTS:-demo}" --markdown "$RESULTS"
[ "${CUDA_EMU_LATER:-0}" = 0 ] || stage cuda_emu_cases 150 "${PYTEST[@]}" -m cuda_emu tests
stage bench_memory_update 60 $PYTHON benchmarks/bench_memory_update.py --device $DEVICE --dtypes fp32,fp16 --no-memory "${QUICK[@]}" --markdown "$RESULTS"
stage bench_rsp 30 $PYTHON benchmarks/bench_rsp.py --device $DEVICE --no-memory "${QUICK[@]}" --markdown "$RESULTS"

echo "results appended to $RESULTS; logs in $OUT_DIR; suite $([ $status = 0 ] && echo passed || echo FAILED) after ${SECONDS}s"
exit $status
