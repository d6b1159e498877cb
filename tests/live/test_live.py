"""Live input (``swiftcuda segment --live``): a video file played at 30 FPS to an engine slower than
that, sources that fail mid-stream, and a step made slow on purpose.

The engine is made slower than the source by a delay added to its step (:data:`STEP_DELAY`), so
frames are dropped on any CPU, however fast. Timing bounds are relative to the step times the run
measures: they still catch a queue (queued frames would make the run last many times the video,
and latency grow with every frame) without assuming a machine's speed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from swiftcuda import PrepareOptions, Segmenter, load_model, prepare
from swiftcuda.cli import main
from swiftcuda.io import read_mask, write_mask
from swiftcuda.live import (
    LatencyHistogram,
    LiveCapture,
    open_live_source,
    open_preview,
    run_live,
    segment_live,
    warm_up,
)
from swiftcuda.weights import DEMO, demo_weights_path
from tests.videos import make_video

HEIGHT, WIDTH, FPS, SECONDS = 240, 320, 30, 4
#: Added to every step where drops must happen: at least two frames arrive during each step (three
#: frame intervals, whatever the step itself costs), so at least one of them is dropped.
STEP_DELAY = 3 / FPS

pytestmark = pytest.mark.skipif(not demo_weights_path().is_file(), reason="the demo weights are not in this checkout")


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    """Never open a window in tests: without a display, the live command shows none."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.fixture(scope="module")
def video():
    return make_video(num_frames=FPS * SECONDS, height=HEIGHT, width=WIDTH, object_ids=(1, 2), seed=3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, video) -> Path:
    """The video as a 30 FPS MJPG file."""
    path = tmp_path_factory.mktemp("live") / "clip.avi"
    write_video(path, video.frames)
    return path


@pytest.fixture(scope="module")
def first_mask(tmp_path_factory, video) -> Path:
    path = tmp_path_factory.mktemp("mask") / "first.png"
    write_mask(path, video.labels[0].astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO, device="cpu")  # the CLI's defaults: precision auto


class SlowedSegmenter(Segmenter):
    """The Segmenter with ``delay`` seconds of sleep before each step; its masks are the Segmenter's."""

    def __init__(self, *args, delay: float = STEP_DELAY, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay

    def step(self, image, mask=None):
        time.sleep(self.delay)
        return super().step(image, mask)


def write_video(path: Path, frames: np.ndarray, fps: float = FPS) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video file as (H, W, 3) uint8 RGB, decoded as the capture decodes them."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            capture.release()
            return frames
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def reference_labels(model, frames: list[np.ndarray], first_mask: np.ndarray) -> list[np.ndarray]:
    """The torch Segmenter, stepped through exactly ``frames`` in order (the mask on the first)."""
    segmenter = Segmenter(prepare(model, PrepareOptions(tune=False)), internal_size=None)
    labels = []
    for position, image in enumerate(frames):
        probs = segmenter.step(image, mask=first_mask if position == 0 else None)
        labels.append(segmenter.to_labels(probs).numpy().astype(np.uint8))
    return labels


def run_timed(capture: LiveCapture, segmenter: Segmenter, first_mask: np.ndarray, sample_memory: bool = False):
    """Run ``segment_live`` as ``run_live`` does.

    Returns:
        The masks, the times they were ready (seconds from the start of capture), the run's
        seconds and, with ``sample_memory``, the traced Python memory (numpy arrays included)
        after each mask above what it was at the start of capture; those masks then keep no
        image or labels, so that only the run's own memory is measured.
    """
    warm_up(segmenter, first_mask)
    masks, ready, memory = [], [], []
    if sample_memory:
        tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        with capture:
            for result in segment_live(capture, segmenter, first_mask):
                ready.append(time.perf_counter() - started)
                if sample_memory:
                    result = dataclasses.replace(result, image=None, labels=None)
                    memory.append(tracemalloc.get_traced_memory()[0] - baseline)
                masks.append(result)
        seconds = time.perf_counter() - started
    finally:
        if sample_memory:
            tracemalloc.stop()
    return masks, ready, memory, seconds


def assert_bounded_latency(latencies: list[float], ready: list[float]) -> None:
    """No frame waited for more than one step before its own: the frame a step takes is the newest,
    so it arrived after the step before began (when the mask before that was ready). This holds
    however the machine's load changes the step times; a queue breaks it within a few frames."""
    started = [0.0, 0.0, *ready[:-2]]
    for index, (latency, done, begun) in enumerate(zip(latencies, ready, started, strict=True)):
        assert latency <= done - begun + 0.1, f"processed frame {index} waited {latency:.2f} s ({ready})"


def run_seconds_bound(video_seconds: float, ready: list[float]) -> float:
    """The run ends when the video does, plus the step under way and the last frame's step."""
    return video_seconds + 2 * max(np.diff([0.0, *ready])) + 1.0


def test_video_at_30_fps_drops_frames_with_bounded_latency_and_matches_the_segmenter(clip, video, model):
    capture = open_live_source(str(clip))
    assert capture.paced and capture.fps == FPS
    labels = video.labels[0].astype(np.uint8)
    # Untuned: a tuned engine switches convolution strategy after its first steps, which the live
    # run's warm-up takes before the clock runs, so the two would differ in a few pixels.
    masks, ready, _, seconds = run_timed(
        capture, SlowedSegmenter(prepare(model, PrepareOptions(tune=False)), internal_size=None), labels
    )

    counts = capture.counts
    indices = [mask.index for mask in masks]
    assert counts.received == FPS * SECONDS, "a video file delivers every frame"
    assert counts.dropped > 0 and counts.handed == len(masks) == counts.received - counts.dropped
    assert len(masks) >= 3, f"too few frames processed to judge ({len(masks)})"
    assert indices == sorted(set(indices)) and indices[0] == 0 and indices[-1] == counts.received - 1
    # Played at 30 FPS, the run ends about when the video does; a queue would take every frame's step.
    assert seconds < run_seconds_bound(SECONDS, ready), (seconds, ready)
    assert seconds > 0.9 * SECONDS, "a video file is paced at its frame rate, not read as fast as possible"
    assert_bounded_latency([mask.latency for mask in masks], ready)
    assert capture.end_reason == f"{clip} ended after {FPS * SECONDS} frames"

    frames = decoded_frames(clip)
    expected = reference_labels(model, [frames[i] for i in indices], labels)
    for mask, want in zip(masks, expected, strict=True):
        assert np.array_equal(mask.image, frames[mask.index])
        assert np.array_equal(mask.labels, want), f"frame {mask.index} differs from the Segmenter's"


def test_cli_live_writes_the_masks_segment_writes_for_the_same_frames(tmp_path, clip, first_mask, capsys, monkeypatch):
    out, overlay = tmp_path / "live", tmp_path / "overlay.mp4"
    command = [
        "segment",
        "--live",
        str(clip),
        "--mask",
        str(first_mask),
        "--out",
        str(out),
        "--overlay",
        str(overlay),
        "--internal-size",
        "none",
        "--no-tune",
    ]  # untuned, as the reference segment run below
    step = Segmenter.step

    def slowed_step(self, image, mask=None):
        time.sleep(STEP_DELAY)
        return step(self, image, mask)

    with monkeypatch.context() as patch:  # the live run's steps only: slower than the source on any CPU
        patch.setattr(Segmenter, "step", slowed_step)
        assert main(command) == 0
    summary = capsys.readouterr().out
    assert f"{FPS * SECONDS} frames received" in summary and "capture-to-mask latency p50" in summary, summary

    names = sorted(p.name for p in out.iterdir())
    indices = [int(Path(name).stem) for name in names]
    assert 3 <= len(names) < FPS * SECONDS and names[0] == "00000.png"
    assert np.array_equal(read_mask(out / names[0]), read_mask(first_mask)), "the first mask applies to the first frame"
    # `swiftcuda segment` on exactly the processed frames (lossless PNGs named by source index).
    frames, folder = decoded_frames(clip), tmp_path / "processed"
    folder.mkdir()
    for index in indices:
        cv2.imwrite(str(folder / f"{index:05d}.png"), cv2.cvtColor(frames[index], cv2.COLOR_RGB2BGR))
    reference = tmp_path / "reference"
    assert (
        main(
            [
                "segment",
                str(folder),
                "--mask",
                str(first_mask),
                "--out",
                str(reference),
                "--internal-size",
                "none",
                "--no-tune",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in reference.iterdir()) == names
    for name in names:
        assert np.array_equal(read_mask(out / name), read_mask(reference / name)), name

    # The overlay holds each processed frame until the next: it plays as long as the video.
    capture, count = cv2.VideoCapture(str(overlay)), 0
    while capture.read()[0]:
        count += 1
    assert count == FPS * SECONDS and capture.get(cv2.CAP_PROP_FPS) == FPS


class FailingCamera:
    """A camera that delivers ``frames`` at 30 FPS, then fails: its read raises, or returns False."""

    def __init__(self, frames: np.ndarray, raises: bool) -> None:
        self.frames, self.raises, self.position, self.released = frames, raises, 0, False

    def read(self):
        time.sleep(1 / FPS)
        if self.position == len(self.frames):
            if self.raises:
                raise RuntimeError("camera unplugged")
            return False, None
        self.position += 1
        return True, cv2.cvtColor(self.frames[self.position - 1], cv2.COLOR_RGB2BGR)

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize("raises", [True, False], ids=["read-raises", "read-returns-false"])
def test_source_failing_mid_stream_ends_the_run_with_what_was_done(tmp_path, video, model, raises, caplog):
    camera = FailingCamera(video.frames[:12], raises)
    capture = LiveCapture(camera, name="camera 7", fps=FPS)
    caplog.set_level(logging.INFO, logger="swiftcuda.live.runner")
    segmenter = Segmenter(model, internal_size=None)
    report = run_live(capture, segmenter, video.labels[0].astype(np.uint8), tmp_path, report_every=0.1)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("live: ")]
    assert progress and all("received" in line and "latency p50" in line for line in progress), progress
    written = sorted(int(p.stem) for p in tmp_path.glob("*.png"))
    assert camera.released and report.received == 12 and report.processed == len(written) >= 1
    assert written[0] == 0 and written[-1] == 11, "the newest frame before the failure is still segmented"
    assert report.dropped == 12 - len(written)
    if raises:
        assert report.end_reason == "camera 7 failed after 12 frames (RuntimeError: camera unplugged)"
    else:
        assert report.end_reason == "camera 7 ended after 12 frames"


def test_cli_truncated_video_file_keeps_the_masks_done(tmp_path, clip, first_mask, capsys):
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    assert main(["segment", "--live", str(truncated), "--mask", str(first_mask), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    received = len(decoded_frames(truncated))
    assert 0 < received < FPS * SECONDS and f"{received} frames received" in summary, summary
    assert f"ended after {received} frames" in summary
    written = sorted(int(p.stem) for p in out.glob("*.png"))
    assert written and written[0] == 0 and written[-1] == received - 1
    assert not list(tmp_path.glob(".out.*")), "the staging folder was moved into place"


def test_slow_step_only_raises_the_drop_count(tmp_path, video, model):
    """A step slower by 0.3 s drops more frames; latency stays within two steps, and memory flat."""
    short = tmp_path / "short.avi"
    write_video(short, video.frames[: FPS * 3])
    labels = video.labels[0].astype(np.uint8)

    runs = {}
    for name, segmenter in (
        ("normal", Segmenter(model, internal_size=None)),
        ("slow", SlowedSegmenter(model, internal_size=None, delay=0.3)),
    ):
        capture = open_live_source(str(short))
        result = run_timed(capture, segmenter, labels, sample_memory=name == "slow")
        runs[name] = (capture.counts, *result)
    normal, slow = runs["normal"][0], runs["slow"][0]
    assert normal.received == slow.received == FPS * 3
    assert slow.dropped > normal.dropped and slow.handed < normal.handed

    _, masks, ready, memory, seconds = runs["slow"]
    assert len(masks) >= 3, f"too few frames processed to judge ({len(masks)})"
    assert seconds < run_seconds_bound(3, ready), (seconds, ready)
    assert_bounded_latency([mask.latency for mask in masks], ready)
    # Traced Python memory (numpy frames included): a queue would hold every waiting frame.
    assert max(memory) < 10 * video.frames[0].nbytes, memory


def test_live_and_input_are_exclusive_and_sources_are_checked(tmp_path, clip, first_mask, capsys):
    out = tmp_path / "out"

    def refused(*args: str) -> str:
        assert main(["segment", *args, "--mask", str(first_mask), "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("swiftcuda: error: "), error
        assert not out.exists()
        return error[0]

    assert "give INPUT or --live SOURCE" in refused()
    assert "not both" in refused(str(clip), "--live", str(clip))
    assert "live source not found" in refused("--live", str(tmp_path / "absent.avi"))
    assert "not a folder" in refused("--live", str(tmp_path))
    (tmp_path / "fake.avi").write_text("not a video")
    assert "cannot open live source" in refused("--live", str(tmp_path / "fake.avi"))
    assert "would replace an input" in refused("--live", str(clip), "--overlay", str(clip))


def test_cli_mask_of_another_size_leaves_nothing(tmp_path, clip, video, capsys):
    small = tmp_path / "small.png"
    write_mask(small, video.labels[0][56:88, 72:120].astype(np.uint8))
    out = tmp_path / "out"
    assert main(["segment", "--live", str(clip), "--mask", str(small), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("swiftcuda: error: the mask is 32x48") and "give a mask of the live frames' size" in error
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_latency_percentiles_match_numpy_within_a_bin():
    latencies = np.random.default_rng(0).lognormal(mean=-2.0, sigma=0.8, size=5000)
    histogram = LatencyHistogram()
    for latency in latencies:
        histogram.add(float(latency))
    assert histogram.count == len(latencies) and histogram.max == latencies.max()
    for q in (50, 95, 100):
        exact = np.percentile(latencies, q, method="inverted_cdf")
        assert abs(histogram.percentile(q) / exact - 1) < 0.012, q
    assert "p50" in histogram.describe() and LatencyHistogram().describe() == "no latency yet"


def test_no_window_without_a_display():
    assert open_preview("swiftcuda test") is None
