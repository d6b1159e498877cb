"""The demo: a test video the demo weights never saw, segmented, drawn and scored.

The video is generated from a bundled DAVIS mask sequence held out of the demo model's training
(real shapes and motion, generated textures), so its ground truth is known and J&F can be
computed. Everything the demo writes goes into one folder:

    OUT/video/     the test video in the DAVIS layout (frames and ground-truth masks)
    OUT/masks/     the predicted masks, one indexed PNG per frame
    OUT/overlay.mp4, OUT/strip.png   the masks drawn over the frames
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from swiftcuda.data.testset import make_testset
from swiftcuda.inference import Segmenter
from swiftcuda.inference.rescale import AUTO, InternalSize
from swiftcuda.io.frames import read_image
from swiftcuda.io.masks import read_mask, write_mask
from swiftcuda.io.output import check_writable_target, staged_directory
from swiftcuda.io.overlay import OverlayVideoWriter, draw_overlay
from swiftcuda.metrics import evaluate
from swiftcuda.weights import DEMO, load_model

logger = logging.getLogger(__name__)

#: Held out of the demo weights' training (see swiftcuda/assets/demo_r18.md): two objects.
DEMO_SEQUENCE = "horsejump-high"
DEMO_SEED = 2024
STRIP_FRAMES = 4
STRIP_HEIGHT = 180


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured.

    Attributes:
        sequence: the mask sequence the video was made from.
        frames: frames segmented.
        size: (height, width) of the frames (and of the masks).
        running_size: (height, width) the engine ran at (the weights' recommended internal size
            unless another was asked).
        fps: frames per second of the engine (model time).
        j_and_f, j, f: the DAVIS scores of the masks.
        out: the folder holding everything written.
    """

    sequence: str
    frames: int
    size: tuple[int, int]
    running_size: tuple[int, int]
    fps: float
    j_and_f: float
    j: float
    f: float
    out: Path


def _strip(tiles: list[np.ndarray]) -> np.ndarray:
    scaled = [cv2.resize(t, (round(t.shape[1] * STRIP_HEIGHT / t.shape[0]), STRIP_HEIGHT)) for t in tiles]
    return np.concatenate(scaled, axis=1)


def run_demo(
    out: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = "auto",
    weights: str | os.PathLike = DEMO,
    sequence: str = DEMO_SEQUENCE,
    size: int | tuple[int, int] | None = None,
    max_frames: int | None = None,
    internal_size: InternalSize = AUTO,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoResult:
    """Generate the demo video, segment it, write the outputs, and score them.

    Args:
        size, max_frames: shrink the video ((height, width) or the shorter side, frame count); the demo
            itself uses the full 480p sequence.
        internal_size: what the engine runs at (see :class:`~swiftcuda.inference.Segmenter`);
            "auto" is the weights' recommended size.

    Raises:
        InputError / WeightsError: unusable output folder, device or weights.
    """
    check_writable_target(Path(out), overwrite, "output folder", folder=True)  # before the slow parts
    model = load_model(weights, device=device, dtype=dtype)
    with staged_directory(out, overwrite=overwrite) as staging:
        testset = make_testset(
            staging / "video", sequences=[sequence], seed=DEMO_SEED, size=size, max_frames=max_frames, progress=progress
        )
        images_dir = testset.root / "JPEGImages" / "480p" / sequence
        truth_dir = testset.root / "Annotations" / "480p" / sequence
        image_paths = sorted(images_dir.glob("*.jpg"))
        masks_dir = staging / "masks" / sequence
        masks_dir.mkdir(parents=True)
        segmenter = Segmenter(model, internal_size=internal_size)
        picks = set(np.linspace(0, len(image_paths) - 1, STRIP_FRAMES).round().astype(int).tolist())
        tiles, seconds = [], 0.0
        with OverlayVideoWriter(staging / "overlay.mp4", fps=24.0) as overlay:
            for index, path in enumerate(image_paths):
                image = read_image(path)
                mask = read_mask(truth_dir / f"{path.stem}.png") if index == 0 else None
                started = time.perf_counter()
                labels = segmenter.to_labels(segmenter.step(image, mask=mask)).to("cpu").numpy().astype(np.uint8)
                seconds += time.perf_counter() - started
                write_mask(masks_dir / f"{path.stem}.png", labels)
                drawn = draw_overlay(image, labels)
                overlay.write(drawn)
                if index in picks:
                    tiles.append(drawn)
        cv2.imwrite(str(staging / "strip.png"), cv2.cvtColor(_strip(tiles), cv2.COLOR_RGB2BGR))
        evaluation = evaluate(truth_dir.parent, staging / "masks", [sequence], workers=1)
        if not evaluation.ok:  # cannot happen with the files written above: a bug, not bad input
            raise RuntimeError(f"the demo's masks could not be scored: {evaluation.problems}")
    row = evaluation.summary().global_row()
    height, width = image.shape[:2]
    return DemoResult(
        sequence=sequence,
        frames=len(image_paths),
        size=(height, width),
        running_size=segmenter.running_size,
        fps=len(image_paths) / seconds,
        j_and_f=row["J&F-Mean"],
        j=row["J-Mean"],
        f=row["F-Mean"],
        out=Path(out),
    )
