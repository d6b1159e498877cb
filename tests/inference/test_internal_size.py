"""Segmenting at an internal size: sizes chosen, masks back at the input's size,
``None`` bit-identical, small objects kept, the recommendation stored with a checkpoint."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from swiftcuda import BatchedSegmenter, InputError, PrepareOptions, Segmenter, prepare
from swiftcuda.inference.rescale import (
    CPU_MAX_SHORTER_SIDE,
    Rescaler,
    choose_internal_size,
    parse_internal_size,
    shorter_side_size,
)
from swiftcuda.weights import PAPER_INTERNAL_SIZE, demo_weights_path, load_model, with_internal_size
from tests.models import random_swiftnet
from tests.videos import make_video


@pytest.fixture(scope="module")
def model():
    return random_swiftnet(seed=11)


def untuned(model):
    """The engine's copy of ``model`` with the fixed convolution rules: runs compare bit for bit."""
    return prepare(model, PrepareOptions(tune=False))


def run(segmenter: Segmenter, video, frames: int | None = None) -> list[torch.Tensor]:
    frames = frames or len(video.frames)
    probs = [segmenter.step(video.frames[0], mask=video.labels[0])]
    probs += [segmenter.step(video.frames[t]) for t in range(1, frames)]
    return probs


# -- choosing the size -------------------------------------------------------------------------------


def test_requests_are_resolved_as_documented():
    assert choose_internal_size(None, 2160, 3840)[0] is None
    assert choose_internal_size(240, 480, 854)[0] == (240, 427), "shorter side 240, aspect kept"
    assert choose_internal_size(240, 854, 480)[0] == (427, 240), "portrait too"
    assert choose_internal_size(240, 200, 300)[0] is None, "nothing is enlarged"
    assert choose_internal_size((96, 160), 479, 853)[0] == (96, 160), "HxW is exact"
    assert choose_internal_size((479, 853), 479, 853)[0] is None
    assert choose_internal_size("auto", 480, 854, recommended=240)[0] == (240, 427)
    assert choose_internal_size("auto", 480, 854)[0] is None, "no recommendation, a small input: as is"
    size, why = choose_internal_size("auto", 2160, 3840)
    assert size == (CPU_MAX_SHORTER_SIDE, 1920) and "CPU" in why, "a 4K input is shrunk on a CPU"
    assert choose_internal_size("auto", 2160, 3840, recommended=480)[0] == (480, 853)
    assert shorter_side_size(479, 853, 360) == (360, 641)


def test_bad_requests_are_one_line_errors():
    assert parse_internal_size("none") is None and parse_internal_size("AUTO") == "auto"
    assert parse_internal_size("240") == 240 and parse_internal_size("240x432") == (240, 432)
    for text in ("big", "240x", "1x2x3", "8"):
        with pytest.raises(InputError, match="internal size"):
            parse_internal_size(text)
    with pytest.raises(InputError, match="too small"):
        Segmenter(random_swiftnet(0), internal_size=(16, 400))


# -- the rescaling itself ----------------------------------------------------------------------------


def test_rescaler_moves_frames_masks_and_probabilities():
    rescaler = Rescaler((64, 96), (32, 48))
    frame = torch.rand(1, 3, 64, 96)
    expected = cv2.resize(frame[0].permute(1, 2, 0).numpy(), (48, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(rescaler.frame_in(frame)[0].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-6)
    probs = torch.softmax(torch.randn(3, 32, 48), dim=0)
    back = rescaler.probs_out(probs)
    assert back.shape == (3, 64, 96)
    torch.testing.assert_close(back.sum(0), torch.ones(64, 96), rtol=0, atol=1e-5)
    labels = torch.zeros(64, 96, dtype=torch.int64)
    labels[10:40, 20:70] = 3
    scaled = rescaler.mask_in(labels)
    assert scaled.dtype == torch.int64 and set(scaled.unique().tolist()) == {0, 3}
    assert int((scaled == 3).sum()) == 15 * 25


def test_a_tiny_object_survives_the_downscale(model, caplog):
    """An object of 2x2 pixels at 180x300 would vanish at 48x80: it keeps one pixel, with a warning."""
    video = make_video(num_frames=3, height=180, width=300, object_ids=(1,), seed=4)
    first = video.labels[0].copy()
    first[100:102, 250:252] = 7
    segmenter = Segmenter(untuned(model), internal_size=(48, 80))
    with caplog.at_level(logging.WARNING, logger="swiftcuda"):
        probs = segmenter.step(video.frames[0], mask=first)
    assert segmenter.object_ids == (1, 7)
    assert any("object 7 covers 4 pixels" in r.getMessage() for r in caplog.records)
    assert segmenter.memory.num_objects == 2
    labels = segmenter.to_labels(probs).numpy()
    assert np.array_equal(labels, first), "the given frame's output is the given mask, at full size"
    assert segmenter.step(video.frames[1]).shape == (3, 180, 300)


# -- the engine at an internal size --------------------------------------------------------------------


@pytest.mark.parametrize("internal_size", [None, 40, 64, (40, 72), (97, 131)])
def test_masks_come_back_at_odd_input_sizes(model, internal_size):
    """853x479 in the issue; 97x131 here (odd, not a multiple of 16) keeps the test quick."""
    video = make_video(num_frames=6, height=97, width=131, object_ids=(2, 5), appear={5: 3}, seed=9)
    segmenter = Segmenter(untuned(model), internal_size=internal_size)
    probs = [segmenter.step(video.frames[0], mask=video.labels[0])]
    first_labels = segmenter.to_labels(probs[0]).numpy()
    for t in range(1, 6):
        late = np.where(video.labels[t] == 5, 5, 0) if t == 3 else None
        probs.append(segmenter.step(video.frames[t], mask=late))
    assert segmenter.frame_size == (97, 131)
    expected_running = {None: (97, 131), 40: (40, 54), 64: (64, 86), (40, 72): (40, 72), (97, 131): (97, 131)}
    assert segmenter.running_size == expected_running[internal_size]
    for t, p in enumerate(probs):
        assert p.shape == ((1 if t < 3 else 2) + 1, 97, 131)
        torch.testing.assert_close(p.sum(0), torch.ones(97, 131), rtol=0, atol=1e-5)
    assert np.array_equal(first_labels, video.labels[0])
    late_labels = segmenter.to_labels(probs[3]).numpy()
    assert np.array_equal(late_labels == 5, video.labels[3] == 5), "a late object's given mask holds at full size"


def test_the_input_size_and_none_are_bit_identical(model):
    """None, an exact request of the input's size and a shorter side no smaller than the input's all
    run the engine unchanged: bit for bit the same probabilities."""
    video = make_video(num_frames=7, height=75, width=101, object_ids=(1, 2), seed=3)
    reference = run(Segmenter(untuned(model), internal_size=None), video)
    for request in ((75, 101), 75, 200, "auto"):
        probs = run(Segmenter(untuned(model), internal_size=request), video)
        for a, b in zip(reference, probs):
            assert torch.equal(a, b), request


def test_internal_size_tracks_like_running_at_that_size(model):
    """Segmenting at (h, w) is segmenting the shrunk video: same probabilities, shrunk back up."""
    video = make_video(num_frames=6, height=96, width=128, object_ids=(1, 2), seed=5)
    rescaler = Rescaler((96, 128), (48, 64))
    frames = [rescaler.frame_in(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255)[0] for f in video.frames]
    small_mask = rescaler.mask_in(torch.from_numpy(video.labels[0]))
    small = Segmenter(untuned(model), internal_size=None)
    expected = [small.step(frames[0], mask=small_mask)] + [small.step(f) for f in frames[1:]]
    probs = run(Segmenter(untuned(model), internal_size=(48, 64)), video)
    for t in range(1, 6):
        torch.testing.assert_close(probs[t], rescaler.probs_out(expected[t]), rtol=1e-5, atol=1e-5)


def test_batched_streams_at_internal_sizes(model):
    """Videos of different input sizes that share an internal size share a trunk pass and match
    their own Segmenter."""
    videos = [
        make_video(num_frames=4, height=h, width=w, object_ids=(1,), seed=s) for h, w, s in ((96, 128, 1), (72, 96, 2))
    ]
    batch = BatchedSegmenter(untuned(model), num_videos=2, internal_size=(48, 64))
    outputs = [batch.step([v.frames[0] for v in videos], masks=[v.labels[0] for v in videos])]
    outputs += [batch.step([v.frames[t] for v in videos]) for t in range(1, 4)]
    for index, video in enumerate(videos):
        alone = run(Segmenter(untuned(model), internal_size=(48, 64)), video, frames=4)
        for t in range(4):
            torch.testing.assert_close(outputs[t][index], alone[t], rtol=1e-5, atol=1e-5)
            assert outputs[t][index].shape[-2:] == video.frames.shape[1:3]


# -- the recommendation stored with a checkpoint ------------------------------------------------------


def test_checkpoints_carry_their_recommended_size(tmp_path, model):
    official = tmp_path / "official.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, official)
    ours = tmp_path / "ours.pt"
    torch.save(with_internal_size(model.state_dict(), 96), ours)
    assert load_model(official).recommended_internal_size == PAPER_INTERNAL_SIZE
    loaded = load_model(ours)
    assert loaded.recommended_internal_size == 96
    video = make_video(num_frames=2, height=120, width=160, object_ids=(1,), seed=2)
    segmenter = Segmenter(untuned(loaded))
    segmenter.step(video.frames[0], mask=video.labels[0])
    assert segmenter.running_size == (96, 128), "auto runs at the weights' size"
    segmenter = Segmenter(untuned(loaded), internal_size=None)
    segmenter.step(video.frames[0], mask=video.labels[0])
    assert segmenter.running_size == (120, 160)


def test_demo_weights_recommend_a_size():
    """Chosen by held-out J&F among 192-480 (swiftcuda/assets/demo_r18.md)."""
    assert load_model("demo").recommended_internal_size == 240


# -- a 4K input on a CPU ---------------------------------------------------------------------------

_PEAK_SCRIPT = """
import resource, sys, numpy as np, torch
from swiftcuda import PrepareOptions, Segmenter, prepare
from tests.models import random_swiftnet
height, width, request = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
mask = np.zeros((height, width), np.int64); mask[height // 4 : height // 2, width // 4 : width // 2] = 1
untuned = prepare(random_swiftnet(1), PrepareOptions(tune=False))
segmenter = Segmenter(untuned, internal_size=None if request == "none" else request)
segmenter.step(frame, mask=mask)
labels = segmenter.to_labels(segmenter.step(frame))
assert labels.shape == (height, width), labels.shape
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, segmenter.running_size)
"""


def _peak_kib(height: int, width: int, request: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(height), str(width), request],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, running = done.stdout.split(maxsplit=1)
    return int(peak), running.strip()


def test_a_4k_input_runs_within_the_memory_of_1080p():
    """``auto`` shrinks a 2160x3840 input to 1080 on the CPU: the process's peak memory stays
    within that of running a 1080x1920 input as it is (plus the 4K frames and outputs)."""
    peak_4k, running = _peak_kib(2160, 3840, "auto")
    assert running == "(1080, 1920)"
    peak_1080, _ = _peak_kib(1080, 1920, "none")
    four_k_buffers_kib = 2160 * 3840 * (3 + 3 * 4 + 2 * 4 + 8) // 1024  # frame, float frame, probs, labels
    assert peak_4k <= peak_1080 + 2 * four_k_buffers_kib, (peak_4k, peak_1080)


@pytest.mark.skipif(not demo_weights_path().is_file(), reason="the demo weights are not in this checkout")
def test_the_internal_size_benchmark_scores_and_times_every_size(tmp_path):
    """benchmarks/bench_internal_size.py on a tiny DAVIS-layout set: one row per size with the
    demo weights' J&F at that size, the frame size's row at 1.00x, the table appended to --markdown."""
    from swiftcuda.data import make_testset

    make_testset(tmp_path / "set", sequences=["dog"], seed=3, max_frames=5, size=(64, 96))
    markdown = tmp_path / "results.md"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_internal_size.py",
            "--davis",
            str(tmp_path / "set"),
            "--sizes",
            "32,none",
            "--weights",
            "demo",
            "--precision",
            "fp32",
            "--warmup",
            "1",
            "--markdown",
            str(markdown),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 32 ") or line.startswith("| none")]
    assert len(rows) == 2, done.stdout
    # Recorded in float32 (3 decimals printed); the tolerance absorbs other CPUs' rounding and the
    # convolution tuning. A 32-pixel shorter side loses about half the score of the frames' size.
    scores = [float(row.split("|")[2]) for row in rows]
    assert scores == [pytest.approx(0.366, abs=0.01), pytest.approx(0.686, abs=0.01)], done.stdout
    assert rows[1].rstrip().endswith("| 1.00x |")
    assert "CPU: " in markdown.read_text(), "every table names the CPU it ran on"


def test_info_shows_a_checkpoints_recommended_size(tmp_path, model, capsys):
    from swiftcuda.cli import main

    ours = tmp_path / "ours.pt"
    torch.save(with_internal_size(model.state_dict(), 96), ours)
    assert main(["info", "--weights", str(ours)]) == 0
    text = capsys.readouterr().out
    assert "SwiftNet-R18" in text and "recommended internal size: 96" in text
    assert main(["info", "--json", "--weights", "demo"]) == 0
    assert '"recommended_internal_size": 240' in capsys.readouterr().out
    assert main(["info", "--weights", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_segment_command_at_an_internal_size(tmp_path, model, capsys):
    """`segment --internal-size 48`: masks at the frames' odd size, the first one the given mask, and
    the summary names the size the engine ran at; a bad value is a usage error."""
    from swiftcuda.cli import main
    from swiftcuda.io.masks import read_mask, write_mask

    video = make_video(num_frames=4, height=97, width=131, object_ids=(1, 2), seed=7)
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(video.frames):
        cv2.imwrite(str(frames / f"{index:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    write_mask(tmp_path / "first.png", video.labels[0].astype(np.uint8))
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "masks"
    args = ["segment", str(frames), "--mask", str(tmp_path / "first.png"), "--out", str(out), "--weights", str(weights)]
    assert main([*args, "--internal-size", "48", "--no-tune"]) == 0
    assert "segmented at 48x65" in capsys.readouterr().out
    masks = sorted(out.iterdir())
    assert len(masks) == 4 and all(read_mask(m).shape == (97, 131) for m in masks)
    assert np.array_equal(read_mask(masks[0]), video.labels[0])
    with pytest.raises(SystemExit):
        main([*args, "--internal-size", "tiny"])
    assert "internal size 'tiny'" in capsys.readouterr().err
