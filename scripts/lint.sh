#!/usr/bin/env bash
# The lint and format checks CI runs (nothing is rewritten): ruff's rules and ruff's format for the
# Python code (configured in pyproject.toml), clang-format for the C++ and CUDA code (.clang-format).
# Exits non-zero on any finding; each tool lists what it found.
#
#   bash scripts/lint.sh          # check
#   ruff check --fix . && ruff format . && clang-format -i <files>    # fix (what the check names)
#
# ruff and clang-format come with the test extra: pip install -e ".[test]".
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
for tool in ruff clang-format; do
    command -v "$tool" >/dev/null || { echo "lint: $tool not found (pip install -e \".[test]\")" >&2; exit 2; }
done

echo "+ ruff check ."
ruff check . || status=1
echo "+ ruff format --check ."
ruff format --check . || status=1

# Tracked files only: build outputs and the copies the tests make are never checked.
mapfile -t sources < <(git ls-files 'csrc/*.h' 'csrc/*.cpp' 'kernels/cuda/*.cu' 'kernels/cuda/*.cuh' \
    'kernels/cuda/*.h' 'tools/cuda_emu/*.h' 'tools/cuda_emu/*.cpp' 'tools/cuda_emu/*.cu')
echo "+ clang-format --dry-run --Werror (${#sources[@]} files of csrc/, kernels/cuda/, tools/cuda_emu/)"
clang-format --dry-run --Werror "${sources[@]}" || status=1

[ "$status" = 0 ] && echo "lint: clean" || echo "lint: findings above" >&2
exit $status
