"""The test seed (tests/conftest.py): a failing random test names its seed, and a rerun with
SWIFTCUDA_TEST_SEED set to it draws the same values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SEED_VARIABLE, seed_for

ROOT = Path(__file__).resolve().parents[1]

FAILING_TEST = """
import random

import numpy as np
import torch


def test_draws(generator):
    drawn = torch.randn(3, generator=generator).tolist() + [torch.rand(()).item(), np.random.rand(), random.random()]
    print("DRAWN", drawn)
    assert False, "fails on purpose"


def test_other(seed):
    print("SEED", seed)
    assert False
"""


def run_pytest(folder: Path, seed: int | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != SEED_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if seed is not None:
        env[SEED_VARIABLE] = str(seed)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_draw.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr  # both tests fail, nothing else goes wrong
    return run.stdout


def reported(output: str, test: str) -> tuple[int, str]:
    """(the seed the failure report names, what the test printed) for ``test``."""
    seeds = {
        name: int(seed)
        for seed, name in re.findall(rf"rerun: {SEED_VARIABLE}=(\d+) python -m pytest 'test_draw.py::(\w+)'", output)
    }
    printed = dict(re.findall(r"_+ (\w+) _+.*?\n((?:DRAWN|SEED) [^\n]*)", output, re.S))
    return seeds[test], printed[test]


@pytest.fixture
def failing_tests(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403 (the hooks and fixtures)\n")
    (tmp_path / "test_draw.py").write_text(FAILING_TEST)
    return tmp_path


def test_a_failure_names_its_seed_and_reruns_identically(failing_tests):
    first = run_pytest(failing_tests, None)
    seed, drawn = reported(first, "test_draws")
    other_seed, _ = reported(first, "test_other")
    assert seed == seed_for("test_draw.py::test_draws") and other_seed == seed_for("test_draw.py::test_other")
    assert seed != other_seed, "each test has its own default seed"

    again = run_pytest(failing_tests, seed)
    assert reported(again, "test_draws") == (seed, drawn), "the printed seed must replay the same draws"
    assert reported(again, "test_other") == (seed, f"SEED {seed}"), "the variable sets every test's seed"


def test_the_default_seed_is_a_stable_hash_of_the_test_id(monkeypatch):
    monkeypatch.delenv(SEED_VARIABLE, raising=False)
    assert seed_for("a.py::t") == seed_for("a.py::t") != seed_for("a.py::t[1]")
    assert 0 <= seed_for("a.py::t") < 2**31
    monkeypatch.setenv(SEED_VARIABLE, "12")
    assert seed_for("a.py::t") == seed_for("b.py::u") == 12
    monkeypatch.setenv(SEED_VARIABLE, "twelve")
    with pytest.raises(pytest.UsageError, match="SWIFTCUDA_TEST_SEED='twelve'"):
        seed_for("a.py::t")
