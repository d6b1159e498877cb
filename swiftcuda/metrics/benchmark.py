"""Running the engine over the videos of a benchmark and timing it.

The time counted is the model's: from handing a decoded frame to the segmenter to having its
label map on the device (synchronised on a GPU), so reading frames and writing masks are left
out. Frames before the first given mask (YouTube-VOS videos whose objects appear later) are not
run and not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swiftcuda.inference import Segmenter
from swiftcuda.io.frames import read_image


@dataclass(frozen=True)
class VideoRun:
    """How long the engine took on one video.

    Attributes:
        name: the video.
        frames: frames the engine ran on.
        seconds: model time over those frames.
    """

    name: str
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def overall_fps(runs: Sequence[VideoRun]) -> float:
    """Frames over model seconds, all videos together."""
    seconds = sum(r.seconds for r in runs)
    return sum(r.frames for r in runs) / seconds if seconds > 0 else float("nan")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def segment_video(
    segmenter: Segmenter,
    name: str,
    image_paths: Sequence[Path],
    given_masks: Mapping[int, np.ndarray],
    on_labels: Callable[[int, np.ndarray], None],
) -> VideoRun:
    """Segment one video from its first given mask on.

    Args:
        segmenter: reset here, then fed every frame from the first one with a given mask.
        name: the video, for the returned run.
        image_paths: the frames, in order.
        given_masks: frame index -> (H, W) labels of the objects given at that frame (the first
            frame's objects, or, later, only the objects that newly appear).
        on_labels: called with (frame index, (H, W) uint8 labels) for every frame, in order;
            frames before the first given mask get all-zero labels.

    Returns:
        The frame count and model time.
    """
    segmenter.reset()
    started, frames, seconds = False, 0, 0.0
    for index, path in enumerate(image_paths):
        image = read_image(path)
        mask = given_masks.get(index)
        if not started and mask is None:
            on_labels(index, np.zeros(image.shape[:2], dtype=np.uint8))
            continue
        _synchronize(segmenter.device)
        start = time.perf_counter()
        labels = segmenter.to_labels(segmenter.step(image, mask=mask))
        _synchronize(segmenter.device)
        seconds += time.perf_counter() - start
        frames += 1
        started = True
        on_labels(index, labels.to("cpu").numpy().astype(np.uint8))
    return VideoRun(name, frames, seconds)


def warm_up(segmenter: Segmenter, image_paths: Sequence[Path], first_mask: np.ndarray, frames: int) -> None:
    """Run a few frames untimed (kernel compilation and autotuning happen here), then reset."""
    if frames <= 0:
        return
    images = [read_image(p) for p in image_paths[: max(frames, 1)]]
    segmenter.reset()
    for index in range(frames):
        segmenter.step(images[index % len(images)], mask=first_mask if index == 0 else None)
    _synchronize(segmenter.device)
    segmenter.reset()
