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


def test_the_readme_test_command_runs_the_two_pass_script():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("<!-- test-command -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert command.strip().endswith("&& bash scripts/test.sh")
    script = (ROOT / "scripts" / "test.sh").read_text()
    serial = script.split("serial_tests=(", 1)[1].split(")", 1)[0].split()
    assert serial and all((ROOT / folder).is_dir() for folder in serial), serial


@pytest.mark.parametrize(
    ("parallel", "serial", "expected"),
    [(0, 0, 0), (1, 0, 1), (0, 1, 1), (5, 0, 0), (0, 5, 0), (5, 5, 5), (2, 0, 2)],
)
def test_the_two_pass_script_fails_when_a_pass_fails(tmp_path, parallel, serial, expected):
    """A stand-in pytest exits with the given status for each pass (5: no test selected)."""
    fake = tmp_path / "pytest"
    fake.write_text(
        f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "{tmp_path}/calls"\n'
        f'case " $* " in *" -n auto "*) exit {parallel};; *) exit {serial};; esac\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "test.sh"), "-x"], env=env, capture_output=True, text=True)
    assert run.returncode == expected, run.stdout + run.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == (1 if parallel not in (0, 5) else 2) and all(call.endswith("-x") for call in calls)
