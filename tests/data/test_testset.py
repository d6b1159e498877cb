"""Generated test videos: layout, determinism, masks equal to the source, real texture contrast."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from swiftcuda.cli import main
from swiftcuda.data import (
    DavisDataset,
    bundled_masks_root,
    list_mask_sequences,
    load_mask_sequence,
    make_testset,
    render_video,
    sequence_rng,
)
from swiftcuda.data.testset import resize_labels
from swiftcuda.io import read_mask
from swiftcuda.io.frames import read_image

SMALL = (54, 96)


def test_bundled_masks_ship_with_their_license():
    root = bundled_masks_root()
    assert (root / "LICENSE").is_file() and (root / "README.md").is_file()
    names = list_mask_sequences()
    assert len(names) == 20 and "kite-surf" in names
    assert "BSD 3-Clause" in (root / "LICENSE").read_text()


def test_layout_and_masks_equal_the_resized_source(tmp_path):
    out = tmp_path / "set"
    testset = make_testset(out, sequences=["kite-surf", "dog"], max_frames=3, size=SMALL)
    assert testset.sequences == ("kite-surf", "dog")
    for year in ("2017", "2016"):
        assert (out / "ImageSets" / year / "val.txt").read_text() == "kite-surf\ndog\n"
    assert (out / "LICENSE").is_file() and (out / "README.md").is_file()
    dataset = DavisDataset(out, "val", "2017")
    for name in testset.sequences:
        sequence = dataset.sequence(name)
        assert sequence.frame_names == ["00000", "00001", "00002"]
        sources = sorted((bundled_masks_root() / name).glob("*.png"))[:3]
        for t, source in enumerate(sources):
            image = read_image(out / "JPEGImages" / "480p" / name / f"{t:05d}.jpg")
            assert image.shape == (*SMALL, 3)
            expected = resize_labels(read_mask(source), *SMALL)
            assert np.array_equal(read_mask(out / "Annotations" / "480p" / name / f"{t:05d}.png"), expected)
    assert np.unique(dataset.sequence("kite-surf").first_mask()).tolist() == [0, 1, 2, 3]


def test_full_size_masks_are_the_source_masks(tmp_path):
    make_testset(tmp_path / "set", sequences=["bike-packing"], max_frames=2, frame_step=3)
    sources = sorted((bundled_masks_root() / "bike-packing").glob("*.png"))
    for t, source in enumerate([sources[0], sources[3]]):
        written = read_mask(tmp_path / "set" / "Annotations" / "480p" / "bike-packing" / f"{t:05d}.png")
        assert np.array_equal(written, read_mask(source))
        assert read_image(tmp_path / "set" / "JPEGImages" / "480p" / "bike-packing" / f"{t:05d}.jpg").shape == (
            480,
            910,
            3,
        )


def _files(root):
    return {
        p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "README.md"
    }


def test_deterministic_per_seed(tmp_path):
    kwargs = dict(sequences=["dog", "kite-surf"], max_frames=2, size=SMALL)
    first = _files(make_testset(tmp_path / "a", seed=3, **kwargs).root)
    again = _files(make_testset(tmp_path / "b", seed=3, **kwargs).root)
    other = _files(make_testset(tmp_path / "c", seed=4, **kwargs).root)
    assert first == again
    images = [k for k in first if k.suffix == ".jpg"]
    masks = [k for k in first if k.suffix == ".png"]
    assert all(first[k] != other[k] for k in images)
    assert all(first[k] == other[k] for k in masks)
    # A sequence looks the same whatever else is generated with it.
    alone = _files(make_testset(tmp_path / "d", seed=3, sequences=["kite-surf"], max_frames=2, size=SMALL).root)
    assert all(alone[k] == first[k] for k in alone if k.suffix == ".jpg")


def _colour_histogram(pixels: np.ndarray) -> np.ndarray:
    bins = (pixels // 32).astype(np.int64)
    counts = np.bincount(bins[:, 0] * 64 + bins[:, 1] * 8 + bins[:, 2], minlength=512).astype(float)
    return counts / counts.sum()


def _inner(mask: np.ndarray) -> np.ndarray:
    """The mask without its one-pixel rim (where the painted edge is blended)."""
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


@pytest.mark.parametrize("name", ["kite-surf", "paragliding-launch", "bike-packing"])
def test_objects_are_textured_and_differ_from_the_background_and_each_other(name):
    labels = load_mask_sequence(bundled_masks_root() / name, max_frames=3, size=(120, 214))
    frames = render_video(labels, sequence_rng(0, name))
    assert frames.shape == (*labels.shape, 3) and frames.dtype == np.uint8
    frame, mask = frames[0], labels[0]
    background = frame[_inner(mask == 0)]
    assert background.std(axis=0).max() > 10  # the background is textured too
    histograms = {}
    for object_id in [int(i) for i in np.unique(mask) if i]:
        region = _inner(mask == object_id)
        if region.sum() < 30:
            continue
        pixels = frame[region]
        # Textured: no flat colour inside the object.
        assert pixels.std(axis=0).max() > 8, object_id
        histograms[object_id] = _colour_histogram(pixels)
        # Its colours are mostly not the background's.
        assert np.minimum(histograms[object_id], _colour_histogram(background)).sum() < 0.3, object_id
    assert histograms
    ids = list(histograms)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            assert np.minimum(histograms[a], histograms[b]).sum() < 0.3, (a, b)


def test_background_moves_on_its_own():
    labels = load_mask_sequence(bundled_masks_root() / "blackswan", max_frames=4, size=(120, 214))
    frames = render_video(labels, sequence_rng(0, "blackswan")).astype(np.float32)
    still = _inner((labels[0] == 0) & (labels[3] == 0))
    assert np.abs(frames[3] - frames[0]).mean(axis=-1)[still].mean() > 10
    # Objects that do not move at all: the background still does, and the objects do not.
    frozen = np.repeat(labels[:1], 4, axis=0)
    frames = render_video(frozen, sequence_rng(0, "blackswan")).astype(np.float32)
    change = np.abs(frames[3] - frames[0]).mean(axis=-1)
    assert change[_inner(frozen[0] == 0)].mean() > 10
    assert change[_inner(frozen[0] == 1)].mean() < change[_inner(frozen[0] == 0)].mean() / 2


def test_cli_make_testset(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "make-testset",
            "--out",
            str(out),
            "--sequences",
            "camel,cows",
            "--frames",
            "2",
            "--size",
            "36x64",
            "--seed",
            "1",
            "--set",
            "mini",
        ]
    )
    assert code == 0
    assert (out / "ImageSets" / "2017" / "mini.txt").read_text() == "camel\ncows\n"
    assert read_image(out / "JPEGImages" / "480p" / "cows" / "00001.jpg").shape == (36, 64, 3)
    assert "wrote 2 sequence(s)" in capsys.readouterr().out
    code = main(["make-testset", "--out", str(out), "--sequences", "camel", "--frames", "2", "--size", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    code = main(["make-testset", "--out", str(tmp_path / "x"), "--sequences", "unicorn"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown sequence(s) unicorn" in err and not (tmp_path / "x").exists()


def test_masks_from_another_folder(tmp_path):
    from swiftcuda.io import write_mask

    masks = tmp_path / "masks" / "blob"
    masks.mkdir(parents=True)
    for t in range(3):
        labels = np.zeros((40, 60), np.uint8)
        labels[10:30, 5 + 5 * t : 25 + 5 * t] = 1
        write_mask(masks / f"f{t}.png", labels)
    testset = make_testset(tmp_path / "out", tmp_path / "masks")
    assert testset.sequences == ("blob",)
    assert np.array_equal(
        read_mask(tmp_path / "out" / "Annotations" / "480p" / "blob" / "00002.png")[10:30, 15:35], np.ones((20, 20))
    )
