"""The lint and format checks CI runs (scripts/lint.sh): they are run by .ci/run, and each of them
fails on a planted violation, with the project's own configuration."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_lint_script():
    assert "bash scripts/lint.sh" in (ROOT / ".ci" / "run").read_text()
    run = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "lint.sh")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


NOT_INSTALLED = "{} not installed (the test extra installs it)"


@pytest.mark.skipif(shutil.which("ruff") is None, reason=NOT_INSTALLED.format("ruff"))
def test_ruff_fails_on_a_finding_and_on_unformatted_code(tmp_path):
    config = ["--config", str(ROOT / "pyproject.toml")]
    clean = tmp_path / "clean.py"
    clean.write_text("import os\n\nprint(os.sep)\n")
    unused = tmp_path / "unused.py"
    unused.write_text("import os\n")
    unformatted = tmp_path / "unformatted.py"
    unformatted.write_text("x = {'a':1}\n")

    def ruff(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ruff", *args, *config], capture_output=True, text=True, cwd=tmp_path)

    assert ruff("check", str(clean)).returncode == 0
    found = ruff("check", str(unused))
    assert found.returncode == 1 and "F401" in found.stdout, found.stdout
    assert ruff("format", "--check", str(clean)).returncode == 0
    assert ruff("format", "--check", str(unformatted)).returncode == 1


@pytest.mark.skipif(shutil.which("clang-format") is None, reason=NOT_INSTALLED.format("clang-format"))
def test_clang_format_fails_on_unformatted_code(tmp_path):
    shutil.copy(ROOT / ".clang-format", tmp_path / ".clang-format")
    clean = tmp_path / "clean.cu"
    clean.write_text("__global__ void kernel(float* out, int n) {\n  if (threadIdx.x < n) out[threadIdx.x] = 0.f;\n}\n")
    messy = tmp_path / "messy.cpp"
    messy.write_text("int  f( int x ){return x;}\n")

    def check(path: Path) -> int:
        return subprocess.run(["clang-format", "--dry-run", "--Werror", str(path)], capture_output=True).returncode

    assert check(clean) == 0
    assert check(messy) != 0
