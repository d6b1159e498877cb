"""scripts/gpu_suite.sh and the scripts around it.

The dry run itself (every stage on the CPU, the build included) runs in CI from .ci/run, after the
test command has installed the project: running it from here would reinstall the project into
whatever environment runs the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/gpu_suite.sh", "scripts/check_stack.sh", "scripts/fetch_gpu_wheels.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script):
    run = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop on a machine without a GPU")
def test_suite_without_a_gpu_stops_at_once_with_one_line(tmp_path):
    """Without --dry-run on a CPU: one STOP line within seconds, before anything is installed."""
    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(ROOT / "scripts/gpu_suite.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "RESULTS": str(tmp_path / "r.md")},
    )
    assert run.returncode == 3, run.stdout + run.stderr
    stops = [line for line in run.stderr.splitlines() if line.startswith("STOP: ")]
    assert stops == ["STOP: torch sees no CUDA GPU here (run with --dry-run on a machine without one)"], run.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "build.log").exists() and not (tmp_path / "r.md").exists()


def test_ci_runs_the_dry_run():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/gpu_suite.sh --dry-run" in ci, ".ci/run must run `bash scripts/gpu_suite.sh --dry-run`"


def test_sanitizer_target_runs_every_op_on_the_cpu():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/sanitizer_target.py"), "--device", "cpu", "--dtypes", "fp32"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "backend 'cpu' cannot run" in run.stderr:
        pytest.skip("the extension's CPU kernels are not built here")
    assert run.returncode == 0, run.stderr
    assert "every cpu op matched the reference" in run.stdout
