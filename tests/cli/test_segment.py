"""``swiftcuda segment`` end to end, and every bad input it must refuse cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from swiftcuda.cli import main
from swiftcuda.io import read_mask, write_mask
from swiftcuda.weights import DEMO_NOTICE, demo_weights_path
from tests.models import random_swiftnet
from tests.videos import make_video

HEIGHT, WIDTH, FRAMES = 45, 61, 5


@pytest.fixture(scope="module")
def video():
    return make_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, object_ids=(1, 3), seed=6)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "random.pth"
    torch.save(random_swiftnet(seed=1).state_dict(), path)
    return path


def write_frames(folder: Path, frames: np.ndarray, suffix: str = ".jpg", names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        name = names[index] if names else f"{index:05d}"
        cv2.imwrite(str(folder / f"{name}{suffix}"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture
def inputs(tmp_path, video):
    frames = write_frames(tmp_path / "frames", video.frames)
    mask = tmp_path / "first.png"
    write_mask(mask, video.labels[0].astype(np.uint8))
    return frames, mask


def run_cli(*args) -> int:
    return main(["segment", *map(str, args)])


def assert_refused(capsys, code: int, match: str, out: Path) -> None:
    """One line on stderr naming the problem, exit 2, no traceback, no output left behind."""
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert error and error[-1].startswith("swiftcuda: error: ") and match in error[-1], error
    assert not any("Traceback" in line for line in error)
    assert not out.exists() or not any(out.iterdir()), "a refused run must not leave outputs"
    assert not list(out.parent.glob(f".{out.name}.*")), "no staging folder may remain"


def test_segments_a_folder_of_frames(tmp_path, inputs, weights, video):
    frames, mask = inputs
    out, overlay = tmp_path / "masks", tmp_path / "overlay.mp4"
    assert run_cli(frames, "--mask", mask, "--out", out, "--weights", weights, "--overlay", overlay) == 0
    outputs = sorted(out.iterdir())
    assert [p.name for p in outputs] == [f"{i:05d}.png" for i in range(FRAMES)]
    with Image.open(outputs[0]) as first:
        assert first.mode == "P" and first.getpalette()[3:6] == [128, 0, 0]
    assert np.array_equal(read_mask(outputs[0]), video.labels[0]), "frame 0 keeps the given mask"
    assert set(np.unique(read_mask(outputs[-1]))) <= {0, 1, 3}
    capture = cv2.VideoCapture(str(overlay))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == FRAMES
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == WIDTH + 1, "odd sizes are padded, never cropped"


def test_outputs_are_named_after_frames_and_overlay_can_sit_in_the_output(tmp_path, video, weights):
    names = ["frame1", "frame2", "frame10", "frame11", "frame20"]
    frames = write_frames(tmp_path / "frames", video.frames, ".png", names)
    mask = tmp_path / "m.png"
    write_mask(mask, video.labels[0].astype(np.uint8))
    out = tmp_path / "out"
    assert run_cli(frames, "--mask", mask, "--out", out, "--weights", weights, "--overlay", out / "overlay.mp4") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in names] + ["overlay.mp4"])


def test_video_file_gray_and_rgba_frames(tmp_path, video, weights):
    path = tmp_path / "clip.avi"
    even_h, even_w = HEIGHT - HEIGHT % 2, WIDTH - WIDTH % 2  # video codecs want even sizes
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (even_w, even_h))
    for frame in video.frames:
        writer.write(cv2.cvtColor(frame[:even_h, :even_w], cv2.COLOR_RGB2BGR))
    writer.release()
    even_mask = tmp_path / "even.png"
    write_mask(even_mask, video.labels[0][:even_h, :even_w].astype(np.uint8))
    assert run_cli(path, "--mask", even_mask, "--out", tmp_path / "v", "--weights", weights) == 0
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [f"{i:05d}.png" for i in range(FRAMES)]

    mask = tmp_path / "m.png"
    write_mask(mask, video.labels[0].astype(np.uint8))
    gray = tmp_path / "gray"
    gray.mkdir()
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).convert("L").save(gray / f"{index}.png")
    assert run_cli(gray, "--mask", mask, "--out", tmp_path / "g", "--weights", weights) == 0
    rgba = tmp_path / "rgba"
    rgba.mkdir()
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).convert("RGBA").save(rgba / f"{index}.png")
    assert run_cli(rgba, "--mask", mask, "--out", tmp_path / "a", "--weights", weights) == 0
    assert len(list((tmp_path / "a").iterdir())) == FRAMES


def test_existing_output_is_kept_unless_overwrite(tmp_path, inputs, weights, capsys):
    frames, mask = inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    code = run_cli(frames, "--mask", mask, "--out", out, "--weights", weights)
    assert code == 2 and "already exists: pass --overwrite" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "mine"
    assert run_cli(frames, "--mask", mask, "--out", out, "--weights", weights, "--overwrite") == 0
    assert not (out / "precious.txt").exists() and len(list(out.iterdir())) == FRAMES


def test_missing_and_empty_input(tmp_path, inputs, weights, capsys):
    _, mask = inputs
    out = tmp_path / "out"
    assert_refused(
        capsys, run_cli(tmp_path / "absent", "--mask", mask, "--out", out, "--weights", weights), "input not found", out
    )
    (tmp_path / "empty").mkdir()
    assert_refused(
        capsys, run_cli(tmp_path / "empty", "--mask", mask, "--out", out, "--weights", weights), "no frames in", out
    )


def test_corrupt_frame_is_found_before_the_first_step(tmp_path, inputs, weights, capsys):
    frames, mask = inputs
    (frames / "00003.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    out = tmp_path / "out"
    assert_refused(capsys, run_cli(frames, "--mask", mask, "--out", out, "--weights", weights), "00003.jpg", out)


def test_frames_that_change_size(tmp_path, inputs, weights, capsys, video):
    frames, mask = inputs
    cv2.imwrite(str(frames / "00002.jpg"), np.zeros((HEIGHT + 2, WIDTH, 3), np.uint8))
    out = tmp_path / "out"
    assert_refused(
        capsys,
        run_cli(frames, "--mask", mask, "--out", out, "--weights", weights),
        "all frames must have one size",
        out,
    )


def test_bad_masks(tmp_path, inputs, weights, capsys, video):
    frames, _ = inputs
    out = tmp_path / "out"
    small = tmp_path / "small.png"
    write_mask(small, video.labels[0][:, :-3].astype(np.uint8))
    assert_refused(
        capsys, run_cli(frames, "--mask", small, "--out", out, "--weights", weights), "give the first frame's mask", out
    )
    empty = tmp_path / "empty.png"
    write_mask(empty, np.zeros((HEIGHT, WIDTH), np.uint8))
    assert_refused(capsys, run_cli(frames, "--mask", empty, "--out", out, "--weights", weights), "has no objects", out)
    fake = tmp_path / "fake.png"
    fake.write_text("not a png at all")
    assert_refused(
        capsys, run_cli(frames, "--mask", fake, "--out", out, "--weights", weights), "not a readable image", out
    )
    assert_refused(
        capsys,
        run_cli(frames, "--mask", tmp_path / "none.png", "--out", out, "--weights", weights),
        "mask not found",
        out,
    )


@pytest.mark.skipif(not demo_weights_path().is_file(), reason="the demo weights are not in this checkout")
def test_without_weights_the_demo_weights_are_used_and_named(tmp_path, inputs, capsys):
    frames, mask = inputs
    out = tmp_path / "out"
    assert run_cli(frames, "--mask", mask, "--out", out) == 0
    assert DEMO_NOTICE in capsys.readouterr().err
    assert len(list(out.glob("*.png"))) == FRAMES


def test_bad_weights_and_device(tmp_path, inputs, weights, capsys, monkeypatch):
    frames, mask = inputs
    out = tmp_path / "out"
    monkeypatch.setattr("swiftcuda.engine.demo_weights_path", lambda: tmp_path / "no-demo-weights.pt")
    assert_refused(capsys, run_cli(frames, "--mask", mask, "--out", out), "no weights given", out)
    monkeypatch.undo()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    assert_refused(
        capsys, run_cli(frames, "--mask", mask, "--out", out, "--weights", garbage), "not a PyTorch checkpoint", out
    )
    if not torch.cuda.is_available():
        assert_refused(
            capsys,
            run_cli(frames, "--mask", mask, "--out", out, "--weights", weights, "--device", "cuda"),
            "no CUDA GPU",
            out,
        )


def test_output_must_not_replace_the_input(tmp_path, inputs, weights, capsys):
    frames, mask = inputs
    code = run_cli(frames, "--mask", mask, "--out", frames, "--weights", weights, "--overwrite")
    assert code == 2 and "would replace the input" in capsys.readouterr().err
    assert len(list(frames.iterdir())) == FRAMES


def test_console_script_exit_status(tmp_path, inputs, weights):
    """The installed entry point: a bad input exits non-zero with one line and no traceback."""
    frames, mask = inputs
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "swiftcuda",
            "segment",
            str(frames),
            "--mask",
            str(tmp_path / "absent.png"),
            "--out",
            str(tmp_path / "o"),
            "--weights",
            str(weights),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"swiftcuda: error: mask not found: {tmp_path / 'absent.png'}"]


@pytest.mark.parametrize(
    "options", [[], ["--direct-convolutions"], ["--no-tune"], ["--no-tune", "--direct-convolutions"]]
)
def test_convolution_options(options):
    """By default a CPU model's convolutions are tuned, Winograd among the candidates;
    --direct-convolutions leaves Winograd out; --no-tune keeps the fixed rules (Winograd 3x3 layers)."""
    import argparse

    from swiftcuda.cli._arguments import add_engine_arguments, engine_options
    from swiftcuda.engine import build_segmenter
    from swiftcuda.optimize.conv_tuning import TunedConv2d
    from swiftcuda.optimize.winograd import WinogradConv2d, winograd_available

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args(options)
    segmenter = build_segmenter(engine_options(args), random_swiftnet(seed=1))
    modules = list(segmenter.model.modules())
    tuned = [m for m in modules if isinstance(m, TunedConv2d)]
    direct = "--direct-convolutions" in options
    if "--no-tune" in options:
        assert not tuned
        assert any(isinstance(m, WinogradConv2d) for m in modules) == (winograd_available() and not direct)
    else:
        assert tuned and not any(isinstance(m, WinogradConv2d) for m in modules)
        assert tuned[0].tuner.allow_winograd == (winograd_available() and not direct)
