"""Drawing masks over frames and writing the result as a video (OpenCV)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from swiftcuda.errors import InputError
from swiftcuda.io.palette import davis_palette

#: Weight of the object colour inside an object.
FILL_ALPHA = 0.5


def draw_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = FILL_ALPHA) -> np.ndarray:
    """Objects tinted with their DAVIS colours and outlined.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        labels: (H, W) integer labels, 0 = background.
        alpha: weight of the object colour inside objects.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    labels = labels.astype(np.uint8, copy=False)
    colours = davis_palette()[labels].astype(np.float32)
    inside = (labels > 0)[..., None]
    blended = np.where(inside, (1 - alpha) * image.astype(np.float32) + alpha * colours, image)
    # A pixel is on an outline when its 3x3 neighbourhood holds another label.
    kernel = np.ones((3, 3), np.uint8)
    outline = (cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)) & (labels > 0)
    blended[outline] = colours[outline]
    return blended.astype(np.uint8)


class OverlayVideoWriter:
    """Writes RGB frames to an MP4 (mpeg4 codec) file, opened on the first frame.

    MPEG-4 stores colour at half resolution, so odd frame sizes are padded by one black row or
    column (the encoder would otherwise crop them).
    """

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        height, width = frame.shape[:2]
        if height % 2 or width % 2:
            frame = cv2.copyMakeBorder(frame, 0, height % 2, 0, width % 2, cv2.BORDER_CONSTANT, value=0)
            height, width = frame.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                raise InputError(f"cannot write a video to {self.path}: give a .mp4 path in a writable folder")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> OverlayVideoWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
