"""Masks, palette, frame order and all-or-nothing outputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from swiftcuda.errors import InputError
from swiftcuda.io import davis_palette, read_mask, write_mask
from swiftcuda.io.frames import natural_key
from swiftcuda.io.output import staged_directory, staged_file


def test_palette_is_the_davis_one():
    palette = davis_palette()
    assert palette.shape == (256, 3)
    assert palette[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert palette[255].tolist() == [224, 224, 192]


def test_mask_round_trip_and_formats(tmp_path):
    labels = np.random.default_rng(0).integers(0, 7, (13, 17)).astype(np.uint8)
    write_mask(tmp_path / "m.png", labels)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
    assert np.array_equal(read_mask(tmp_path / "m.png"), labels)
    Image.fromarray(labels).save(tmp_path / "gray.png")  # grayscale labels
    assert np.array_equal(read_mask(tmp_path / "gray.png"), labels)
    Image.fromarray(davis_palette()[labels]).save(tmp_path / "rgb.png")  # palette colours as RGB
    assert np.array_equal(read_mask(tmp_path / "rgb.png"), labels)


def test_rgb_mask_with_unknown_colour_is_refused(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    with pytest.raises(InputError, match=r"colour \(1, 2, 3\) that is not in the DAVIS palette"):
        read_mask(tmp_path / "odd.png")


def test_natural_order():
    names = ["f10.jpg", "f2.jpg", "f1.jpg", "F3.jpg"]
    assert sorted(names, key=natural_key) == ["f1.jpg", "f2.jpg", "F3.jpg", "f10.jpg"]


def test_staged_outputs_are_all_or_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_directory(target) as staging:
            (staging / "a.png").write_text("x")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with staged_directory(target) as staging:
        (staging / "a.png").write_text("x")
    assert (target / "a.png").read_text() == "x"
    with pytest.raises(InputError, match="overwrite=True"):
        with staged_directory(target):
            pass
    with staged_file(tmp_path / "v.mp4") as staging:
        assert staging.suffix == ".mp4"
        staging.write_text("video")
    assert (tmp_path / "v.mp4").read_text() == "video"
    with pytest.raises(InputError, match="overwrite=True"):
        with staged_file(tmp_path / "v.mp4"):
            pass


def test_label_copier_hands_labels_back_in_order():
    import torch

    from swiftcuda.inference.host_copy import LabelCopier

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    copier = LabelCopier(device)
    maps = [torch.full((3, 4), value, device=device) for value in (1, 7, 200)]
    got = []
    for index, labels in enumerate(maps):
        got += copier.push(index, labels)
    got += copier.drain()
    assert [tag for tag, _ in got] == [0, 1, 2]
    assert [int(array[0, 0]) for _, array in got] == [1, 7, 200]
    assert all(array.dtype == np.uint8 and array.shape == (3, 4) for _, array in got)
