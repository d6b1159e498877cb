#!/usr/bin/env bash
# Prove the build, the suite and the tests on another torch / Triton stack, on a CPU:
#
#   scripts/check_stack.sh 2.11.0 3.6.0      # what the GPU machines run (with Python 3.12 there)
#   scripts/check_stack.sh 2.14.1 3.8.0      # what CI installs
#
# 1. a fresh virtual environment under $STACK_ROOT (default /tmp/swiftcuda-stacks) with exactly
#    torch==TORCH (the registry's build, with its CUDA) and triton==TRITON, plus the runtime and
#    test requirements, and NOT torchvision (the GPU machine does not promise it);
# 2. a copy of the project (tracked and untracked-not-ignored files; the working tree is never
#    touched), built exactly as scripts/gpu_suite.sh builds it: the suite's --dry-run runs every
#    stage (machine checks, prerequisites, build, `swiftcuda info --require cuda`, test selections,
#    the sanitizer target, quick CPU benchmarks) with the GPU parts skipped;
# 3. an explicit assertion that `swiftcuda info --json` lists the extension and its CUDA kernels;
# 4. the whole CPU test suite (pytest, Triton under TRITON_INTERPRET=1);
# 5. the sm_90 compile check of every kernel (benchmarks/gpu_resources.py --arch 90 --check).
#
# Prints one summary block (the lines starting "check_stack:") and exits non-zero when any step
# failed. Python: this machine's python3 (3.11 here; the GPU machine's 3.12 is not available
# here, so 3.12 itself is not covered). Environment: MAX_JOBS (default 2), STACK_ROOT,
# PYTHON3 (the interpreter that makes the venv), KEEP=1 keeps the venv and the copy, REUSE_VENV=1
# reuses a venv that an earlier run kept (the stack is still checked).
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 TORCH_VERSION TRITON_VERSION   (e.g. 2.11.0 3.6.0)" >&2
    exit 2
fi
TORCH=$1
TRITON=$2
REPO=$(cd "$(dirname "$0")/.." && pwd)
STACK_ROOT=${STACK_ROOT:-/tmp/swiftcuda-stacks}
WORK="$STACK_ROOT/torch$TORCH-triton$TRITON"
VENV="$WORK/venv"
PROJECT="$WORK/project"
PYTHON3=${PYTHON3:-python3}
export MAX_JOBS=${MAX_JOBS:-2} CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
LOG="$WORK/logs"
failed=0
summary=()

step() {  # step NAME COMMAND...: run, time, log, remember the outcome
    local name=$1
    shift
    local started=$SECONDS
    echo "--- $name"
    "$@" > "$LOG/$name.log" 2>&1
    local code=$?
    local took=$((SECONDS - started))
    if [ $code -eq 0 ]; then
        summary+=("check_stack: PASS $name (${took}s)")
    else
        summary+=("check_stack: FAIL $name (exit $code, ${took}s; log $LOG/$name.log)")
        failed=1
        tail -25 "$LOG/$name.log"
    fi
    return $code
}

finish() {
    echo
    echo "check_stack: torch $TORCH, triton $TRITON, $("$VENV/bin/python" --version 2>&1), $(date -u '+%Y-%m-%d %H:%M UTC'),"\
         "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x$(nproc), MAX_JOBS=$MAX_JOBS"
    printf '%s\n' "${summary[@]}"
    echo "check_stack: $([ $failed = 0 ] && echo PASSED || echo FAILED) after ${SECONDS}s"
    if [ "${KEEP:-0}" != 1 ] && [ $failed = 0 ]; then rm -rf "$VENV" "$PROJECT"; fi
    exit $failed
}

if [ "${REUSE_VENV:-0}" = 1 ] && [ -x "$VENV/bin/python" ]; then
    # Iterate without reinstalling torch, and keep the compiled objects (build/temp-*: ninja
    # recompiles what changed; tar keeps the sources' times).
    [ ! -d "$PROJECT/build" ] || mv "$PROJECT/build" "$WORK/build.kept"
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name venv ! -name build.kept -exec rm -rf {} +
    mkdir -p "$PROJECT"
    [ ! -d "$WORK/build.kept" ] || mv "$WORK/build.kept" "$PROJECT/build"
else
    rm -rf "$WORK"
fi
mkdir -p "$LOG" "$PROJECT"

make_venv() {
    if [ "${REUSE_VENV:-0}" != 1 ] || [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON3" -m venv "$VENV" || return 1
        # Exactly these torch and Triton; the rest of the runtime and test requirements of
        # setup.py, without torchvision. setuptools/wheel/ninja are left to the suite's
        # prerequisites stage.
        # Triton < 3.7's interpreter fails with NumPy >= 2.4 (triton-lang/triton#9171; swiftcuda
        # reports the Triton backend unavailable on the CPU then): take a NumPy it runs with, so
        # that the Triton tests run under this stack's interpreter instead of being skipped.
        local numpy_spec=numpy
        case $TRITON in 3.[0-6].*|2.*) numpy_spec="numpy<2.4" ;; esac
        "$VENV/bin/python" -m pip install -q "torch==$TORCH" "triton==$TRITON" "$numpy_spec" opencv-python-headless Pillow tqdm pytest \
            || return 1
    fi
    "$VENV/bin/python" - "$TORCH" "$TRITON" <<'EOF'
import sys
import torch, triton
want_torch, want_triton = sys.argv[1:]
print("torch", torch.__version__, "CUDA", torch.version.cuda, "triton", triton.__version__)
assert torch.__version__.split("+")[0] == want_torch, torch.__version__
assert triton.__version__ == want_triton, triton.__version__
assert torch.version.cuda, "a torch without CUDA"
try:
    import torchvision  # noqa: F401
    raise SystemExit("torchvision is installed: the stack must not have it")
except ImportError:
    pass
EOF
}
step venv make_venv || finish

copy_project() {
    # Tracked and untracked-not-ignored files, as the GPU machine receives them.
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard) \
        | (cd "$REPO" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
        | (cd "$REPO" && tar --null -T - -cf -) | tar -xf - -C "$PROJECT"
}
step copy copy_project || finish

# The suite exactly as the GPU session runs it, with --dry-run (no GPU here): its build stage is
# the build; its info stage requires the CUDA kernels (a toolkit is here).
step gpu_suite_dry_run env PATH="$VENV/bin:$PATH" OUT="$WORK/suite" SUITE_BUDGET=3600 BUILD_LIMIT=3000 \
    bash "$PROJECT/scripts/gpu_suite.sh" --dry-run

check_info() {
    cd "$PROJECT" && "$VENV/bin/python" - <<'EOF'
import json, subprocess, sys
info = json.loads(subprocess.run([sys.executable, "-m", "swiftcuda", "info", "--json"], check=True, capture_output=True, text=True).stdout)
ext = info["extension"]
print(json.dumps(ext, indent=1))
assert ext["loaded"], f"extension not loaded: {ext['error']}"
assert ext["cuda_kernels"], "the extension has no CUDA kernels"
assert {"sm_80", "sm_90"} <= set(ext["cuda_archs"]), ext["cuda_archs"]
assert ext["built_against_torch"].split("+")[0] == info["versions"]["torch"].split("+")[0]
print("info: extension loaded with CUDA kernels for", ", ".join(ext["cuda_archs"] + ext["ptx_archs"]))
EOF
}
step info check_info

run_tests() {
    cd "$PROJECT" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider
}
step tests run_tests
grep -E '^(=+ )?[0-9]+ (passed|failed)|^=+ .*(passed|failed|skipped).* =+$' "$LOG/tests.log" | tail -1 \
    | sed 's/^/check_stack: tests: /' > "$LOG/tests.count"
[ -s "$LOG/tests.count" ] && summary+=("$(cat "$LOG/tests.count")")
# Skips summed by reason (pytest -rs prints "SKIPPED [count] file:line: reason" per place).
grep -E '^SKIPPED' "$LOG/tests.log" | sed -E 's/^SKIPPED \[([0-9]+)\] [^:]+:[0-9]+: /\1\t/' \
    | awk -F'\t' '{n[$2] += $1} END {for (r in n) print n[r] "\t" r}' | sort -rn | head -8 \
    | sed 's/^\([0-9]*\)\t/check_stack:   skipped: \1 x /' > "$LOG/tests.skips"
while IFS= read -r line; do summary+=("$line"); done < "$LOG/tests.skips"

if [ -f "$PROJECT/benchmarks/gpu_resources.py" ]; then
    step gpu_resources_sm90 env -C "$PROJECT" "$VENV/bin/python" benchmarks/gpu_resources.py --arch 90 --check
else
    summary+=("check_stack: SKIP gpu_resources_sm90 (benchmarks/gpu_resources.py is not in this tree)")
fi
finish
