"""scripts/train_demo.sh, the one-command demo training recipe, runs end to end (tiny, on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_demo.sh"


def test_train_demo_script_trains_exports_and_scores(tmp_path):
    env = dict(
        os.environ,
        DEVICE="cpu",
        STEPS="2",
        BATCH="1",
        CROP="48x64",
        SHAPES="2",
        SIZE="48x80",
        FRAMES="4",
        TRAIN_SEQUENCES="camel,goat",
        HELD_OUT="dog",
        RUN="tiny",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    work = tmp_path / "work"
    result = subprocess.run(["bash", str(SCRIPT), str(work)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("J&F")]
    assert [row[1] for row in rows] == ["tiny-fp16.pt", "demo"]
    for row in rows:  # J&F WEIGHTS s100 s101 s102 mean M
        scores = [float(x) for x in row[2:5]]
        assert all(0.0 <= x <= 1.0 for x in scores) and row[5] == "mean"
        assert float(row[6]) == pytest.approx(sum(scores) / 3, abs=1e-3)
    assert (work / "tiny" / "step-0000001.pt").is_file() and (work / "tiny-fp16.pt").is_file()
