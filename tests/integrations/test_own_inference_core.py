"""XMem's, Cutie's and STCN's own InferenceCore, unpatched vs patched (benchmarks/check_stm_family_masks.py).

Runs only where the repositories are given, never with their code in this tree:
SWIFTCUDA_XMEM_REPO, SWIFTCUDA_CUTIE_REPO, SWIFTCUDA_STCN_REPO (each the repository's root). Cutie
needs hydra-core and omegaconf, STCN torchvision. Slow: two short videos per family on random
weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "check_stm_family_masks.py"


@pytest.mark.parametrize("family", ["xmem", "cutie", "stcn"])
def test_masks_agree_on_the_familys_own_inference_core(family, tmp_path):
    repo = os.environ.get(f"SWIFTCUDA_{family.upper()}_REPO")
    if not repo:
        pytest.skip(f"SWIFTCUDA_{family.upper()}_REPO is not set (the root of the {family} repository)")
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), f"--{family}", repo, "--frames", "12", "--json", str(results)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert results.exists(), done.stdout + done.stderr
    (result,) = json.loads(results.read_text())
    assert result["agreement"] >= 0.995, done.stdout
    assert result["nan_frames_patched"] == 0
    if family != "stcn":  # STCN has no long-term memory
        assert result["facts"]["long_term_from_frame"] is not None, "long-term memory never engaged"
