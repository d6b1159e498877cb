"""scripts/train_demo.sh, the one-command demo training recipe, runs end to end (tiny, on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_demo.sh"


def test_train_demo_script_trains_exports_and_scores(tmp_path):
    env = dict(
        os.environ,
        DEVICE="cpu", STEPS="2", BATCH="1", CROP="48x64", SHAPES="2", SIZE="80x48", FRAMES="4",
        TRAIN_SEQUENCES="camel,goat", HELD_OUT="dog", RUN="tiny",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    work = tmp_path / "work"
    result = subprocess.run(["bash", str(SCRIPT), str(work)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    scores = [line.split() for line in result.stdout.splitlines() if line.startswith("heldout")]
    assert [row[:2] for row in scores] == [
        ["heldout", "tiny-fp16.pt"], ["heldout", "demo"], ["heldout-val101", "tiny-fp16.pt"], ["heldout-val101", "demo"],
    ]
    assert all(0.0 <= float(row[2]) <= 1.0 for row in scores)
    assert (work / "tiny" / "step-0000001.pt").is_file() and (work / "tiny-fp16.pt").is_file()
    # A second call reuses the data and the finished run: nothing is trained again.
    again = subprocess.run(["bash", str(SCRIPT), str(work)], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "trained to step" not in again.stdout
