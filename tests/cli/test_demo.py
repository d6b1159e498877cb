"""The demo pipeline, and the demo weights when they ship."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swiftcuda.cli import main
from swiftcuda.demo import run_demo
from swiftcuda.io import read_mask
from swiftcuda.weights import demo_weights_path, load_model, read_checkpoint_info
from tests.models import random_swiftnet


def test_demo_writes_masks_overlay_strip_and_scores(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(random_swiftnet(seed=0).state_dict(), weights)
    # float32 explicitly: "auto" is bfloat16 on CPUs with native bfloat16, and the score would move.
    result = run_demo(
        tmp_path / "demo", weights=weights, size=(72, 128), max_frames=6, progress=False, dtype=torch.float32
    )
    out = tmp_path / "demo"
    masks = sorted((out / "masks" / result.sequence).glob("*.png"))
    assert len(masks) == result.frames == 6
    truth = out / "video" / "Annotations" / "480p" / result.sequence
    assert np.array_equal(read_mask(masks[0]), read_mask(truth / masks[0].name)), "frame 0 is the given mask"
    assert (out / "overlay.mp4").stat().st_size > 0 and (out / "strip.png").stat().st_size > 0
    # The score recorded for these random weights; the tolerance absorbs other CPUs' float32 rounding
    # (AVX2 / AVX-512 kernels) and the convolution tuning, not a change in what the engine computes.
    assert result.j_and_f == pytest.approx(0.0663, abs=0.005) and result.fps > 0
    assert result.size == (72, 128)


def test_demo_refuses_an_existing_output(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "demo" / "keep.txt").read_text() == "mine"


@pytest.mark.skipif(not demo_weights_path().is_file(), reason="the demo weights are not in this checkout")
def test_demo_weights_ship_small_and_half_precision():
    assert demo_weights_path().stat().st_size <= 20 * 2**20
    state, internal_size = read_checkpoint_info(demo_weights_path())
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
    assert internal_size == 240, "the recommended size chosen by held-out J&F (demo_r18.md)"
    model = load_model("demo", dtype=torch.float32)
    assert not model.training and next(model.parameters()).dtype == torch.float32


@pytest.mark.skipif(not demo_weights_path().is_file(), reason="the demo weights are not in this checkout")
def test_demo_weights_track_a_held_out_object(tmp_path):
    """On a held-out sequence the shipped weights follow the object far better than copying frame 0:
    the mean IoU over 7 frames recorded in float32, against 0.57 for copying the first mask."""
    from swiftcuda import Segmenter
    from swiftcuda.data import DavisDataset, make_testset
    from swiftcuda.io.frames import read_image

    make_testset(tmp_path / "set", sequences=["dog"], seed=100, max_frames=8, size=(240, 432))
    sequence = DavisDataset(tmp_path / "set", "val").sequence("dog")
    segmenter = Segmenter(load_model("demo", dtype=torch.float32))
    truth = [read_mask(sequence.annotation_paths[p.stem]) == 1 for p in sequence.image_paths]
    tracked, copied = [], []
    for index, path in enumerate(sequence.image_paths):
        probs = segmenter.step(read_image(path), mask=truth[0].astype(np.uint8) if index == 0 else None)
        if index:
            predicted = segmenter.to_labels(probs).numpy() == 1
            tracked.append((predicted & truth[index]).sum() / (predicted | truth[index]).sum())
            copied.append((truth[0] & truth[index]).sum() / (truth[0] | truth[index]).sum())
    assert np.mean(copied) == pytest.approx(0.5679, abs=0.002), "the rendered sequence changed"
    # Recorded; the tolerance absorbs other CPUs' float32 rounding and the convolution tuning.
    assert np.mean(tracked) == pytest.approx(0.8269, abs=0.01), (np.mean(tracked), np.mean(copied))
