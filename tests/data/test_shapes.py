"""Random-shape training videos: visible, moving, deforming, occluding objects; deterministic; CLI."""

from __future__ import annotations

import numpy as np
import pytest

from swiftcuda.cli import main
from swiftcuda.data import DavisDataset, make_shapes_testset
from swiftcuda.data.shapes import MIN_FIRST_FRAME_AREA, random_shape_sequence
from swiftcuda.io import read_mask
from swiftcuda.io.frames import read_image


@pytest.mark.parametrize("seed", range(8))
def test_every_object_is_visible_in_the_first_frame(seed):
    labels = random_shape_sequence(np.random.default_rng(seed), 6, 72, 128, max_objects=3)
    assert labels.shape == (6, 72, 128) and labels.dtype == np.uint8
    ids = sorted(set(np.unique(labels).tolist()) - {0})
    assert 1 <= len(ids) <= 3
    assert set(np.unique(labels[0]).tolist()) - {0} == set(ids)  # no object appears only later
    assert (labels[0] > 0).mean() >= MIN_FIRST_FRAME_AREA


def test_shapes_differ_move_and_are_deterministic():
    first = [random_shape_sequence(np.random.default_rng(s), 8, 96, 160, max_objects=1) for s in range(6)]
    masks = [seq[0] == 1 for seq in first]
    overlaps = [(a & b).sum() / max((a | b).sum(), 1) for i, a in enumerate(masks) for b in masks[i + 1 :]]
    assert max(overlaps) < 0.9  # different seeds, different shapes
    moved = [(seq[0] != seq[-1]).mean() for seq in first]
    assert max(moved) > 0.005  # objects move or deform between the first and last frames
    again = random_shape_sequence(np.random.default_rng(3), 8, 96, 160, max_objects=1)
    assert np.array_equal(again, first[3])


def test_make_shapes_testset_writes_a_davis_layout(tmp_path):
    testset = make_shapes_testset(tmp_path / "shapes", 3, seed=5, frames=4, size=(48, 80))
    assert testset.sequences == ("shapes-0000", "shapes-0001", "shapes-0002")
    dataset = DavisDataset(tmp_path / "shapes", "val")
    for name in testset.sequences:
        sequence = dataset.sequence(name)
        assert len(sequence.image_paths) == 4
        image = read_image(sequence.image_paths[0])
        labels = read_mask(sequence.annotation_paths[sequence.image_paths[0].stem])
        assert image.shape == (48, 80, 3) and labels.shape == (48, 80) and labels.max() >= 1
        inside, outside = image[labels > 0].mean(axis=0), image[labels == 0].mean(axis=0)
        assert image.std() > 5 and np.abs(inside - outside).max() + image[labels > 0].std() > 5  # painted, not blank


def test_cli_random_shapes(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["make-testset", "--random-shapes", "2", "--out", str(out), "--frames", "3", "--size", "48x64"]) == 0
    assert "wrote 2 random-shape sequence(s)" in capsys.readouterr().out
    assert read_image(out / "JPEGImages" / "480p" / "shapes-0001" / "00002.jpg").shape == (48, 64, 3)
    code = main(["make-testset", "--random-shapes", "2", "--out", str(tmp_path / "x"), "--sequences", "camel"])
    err = capsys.readouterr().err
    assert code == 2 and "drop --masks and --sequences" in err and not (tmp_path / "x").exists()
    code = main(["make-testset", "--random-shapes", "2", "--out", str(tmp_path / "y"), "--size", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "HEIGHTxWIDTH" in err and "Traceback" not in err
