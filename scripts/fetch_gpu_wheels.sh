#!/usr/bin/env bash
# Download, on a machine with network, the wheels that scripts/gpu_suite.sh may need on a GPU
# machine that has none: Python 3.12, manylinux x86-64, into .whl/ at the repository root.
#
#   scripts/fetch_gpu_wheels.sh                 # the build prerequisites and runtime requirements
#   scripts/fetch_gpu_wheels.sh pytest==8.4.2   # more, or other versions
#
# Carry .whl/ with the working tree (it must be ignored by git: the script adds /.whl/ to
# .git/info/exclude); gpu_suite.sh then installs only what the machine lacks, from .whl/ alone
# (pip --no-index), never torch or Triton. The GPU machines seen so far (torch 2.11.0+cu130,
# Triton 3.6.0, Python 3.12) already had all of these, so .whl/ is a fallback: keep it small,
# the whole tree that travels is limited to 64 MiB.
#
# setuptools is held below 82 because torch 2.11 requires it (and >= 70.1 for bdist_wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

# Not numpy or opencv-python-headless by default: the machines have them, and opencv's wheel
# alone (~60 MB) would nearly fill the 64 MiB that may travel; name them to fetch them anyway.
PACKAGES=("setuptools>=70.1,<82" "wheel" "ninja" "Pillow" "tqdm" "pytest" "iniconfig" "pluggy" "packaging" "pygments")
[ $# -eq 0 ] || PACKAGES=("$@")

grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
for package in "${PACKAGES[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
        -d .whl "$package"
done
ls -la .whl
du -sh .whl
