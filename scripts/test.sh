#!/usr/bin/env bash
# The test suite, in two passes (plain `pytest` runs the same tests one at a time).
#
# 1. Most tests are computation, much of it on one thread (interpreted Triton runs as numpy, the
#    CUDA emulator runs its fibers on one thread, the command-line tests start Python processes):
#    they run on every core at once (pytest-xdist), one OpenMP thread a worker, each test file on
#    one worker so that its module fixtures are made once. Tests that need several threads set
#    them themselves.
# 2. The tests that time things or start servers, a browser, Ray workers or the GPU suite, and use
#    the cores themselves, run one at a time.
#
# Arguments go to both passes (for example -x or -k NAME); a pass that selects no test is not a
# failure, unless neither pass selects one.
set -uo pipefail
cd "$(dirname "$0")/.."

serial_tests=(tests/annotate tests/bench tests/live tests/many tests/tools)
no_tests=5 # pytest's exit status when nothing was selected

echo "+ OMP_NUM_THREADS=1 pytest -n auto --dist loadfile ${serial_tests[*]/#/--ignore=} $*"
OMP_NUM_THREADS=1 pytest -n auto --dist loadfile "${serial_tests[@]/#/--ignore=}" "$@"
first=$?
[ "$first" -eq 0 ] || [ "$first" -eq "$no_tests" ] || exit "$first"

echo "+ pytest ${serial_tests[*]} $*"
pytest "${serial_tests[@]}" "$@"
second=$?
if [ "$second" -eq "$no_tests" ] && [ "$first" -eq 0 ]; then
    exit 0
fi
exit "$second"
