"""Random-shape mask sequences: unlimited object shapes and motions for training.

Twenty real mask sequences are too few shapes to train on: a model trained on them learns to find
*those* shapes again instead of matching the first frame's appearance, and fails on any other
object (on held-out sequences it scores near the copy-the-first-mask baseline). These sequences
give every clip shapes the model has never seen, so the memory read is the only way to solve them.

Each object is a smooth random blob (a thresholded noise field inside a soft elliptical envelope),
that deforms (the field morphs towards a second one), turns, zooms and travels on a straight path
with a little wobble; objects are drawn in a random depth order, so they occlude one another and may
leave the frame. :func:`swiftcuda.data.testset.render_video` paints them like real mask sequences.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Objects whose first-frame area is below this fraction of the frame are redrawn.
MIN_FIRST_FRAME_AREA = 0.004


def _blob_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float32 field whose positive part is one smooth, irregular blob."""
    cells = int(rng.integers(3, 7))
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    noise = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (size / 2)
    aspect = float(rng.uniform(0.5, 1.0))
    radius2 = (axis[None, :] / 1.0) ** 2 + (axis[:, None] / aspect) ** 2
    envelope = 1.0 - radius2 / 0.8  # positive inside an ellipse, falling to negative at the border
    return envelope + 0.6 * noise / max(float(np.abs(noise).max()), 1e-6)


class _MovingBlob:
    """One object's shape and path; :meth:`mask` gives its (H, W) mask at frame t."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, frames: int) -> None:
        short = min(height, width)
        self.size = int(short * rng.uniform(0.2, 0.6))
        self.fields = (_blob_field(rng, self.size), _blob_field(rng, self.size))
        self.morph_rate = rng.uniform(0.0, 1.0) / max(frames - 1, 1)
        self.start = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
        self.velocity = rng.uniform(-1, 1, 2) * short * rng.uniform(0.0, 0.03)
        self.wobble = short * rng.uniform(0.0, 0.02)
        self.wobble_rate, self.wobble_phase = rng.uniform(0.2, 0.8), rng.uniform(0, 2 * np.pi)
        self.angle, self.turn_rate = rng.uniform(0, 2 * np.pi), math.radians(rng.uniform(-6, 6))
        self.zoom, self.zoom_rate = rng.uniform(0.0, 0.15), rng.uniform(0.1, 0.4)
        self.height, self.width = height, width

    def mask(self, t: int) -> np.ndarray:
        mix = min(self.morph_rate * t, 1.0)
        field = (1.0 - mix) * self.fields[0] + mix * self.fields[1]
        centre = self.start + self.velocity * t + self.wobble * math.sin(self.wobble_rate * t + self.wobble_phase)
        scale = 1.0 + self.zoom * math.sin(self.zoom_rate * t)
        matrix = cv2.getRotationMatrix2D(
            ((self.size - 1) / 2, (self.size - 1) / 2), math.degrees(self.angle + self.turn_rate * t), scale
        )
        matrix[:, 2] += centre - (self.size - 1) / 2
        placed = cv2.warpAffine(
            field,
            matrix,
            (self.width, self.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=-1.0,
        )
        return placed > 0


def random_shape_sequence(
    rng: np.random.Generator, frames: int, height: int, width: int, max_objects: int = 3
) -> np.ndarray:
    """(frames, height, width) uint8 labels of 1..max_objects random moving blobs.

    Objects are numbered in depth order (a higher id is in front), each covers at least
    :data:`MIN_FIRST_FRAME_AREA` of frame 0 before occlusion, an object the ones in front hide
    entirely in frame 0 is removed (ids need not be contiguous), and later frames may lose objects
    to occlusion or to the frame's edge.
    """
    if frames < 1 or height < 16 or width < 16 or max_objects < 1:
        raise ValueError("random_shape_sequence needs frames >= 1, a frame of at least 16x16 and max_objects >= 1")
    count = int(rng.integers(1, max_objects + 1))
    labels = np.zeros((frames, height, width), np.uint8)
    for object_id in range(1, count + 1):
        for _ in range(20):
            blob = _MovingBlob(rng, height, width, frames)
            masks = [blob.mask(t) for t in range(frames)]
            # Part of it over the background in frame 0, not wholly on top of the objects drawn before it.
            over_background = masks[0] & (labels[0] == 0)
            if masks[0].mean() >= MIN_FIRST_FRAME_AREA and over_background.any():
                break
        for t, mask in enumerate(masks):
            labels[t][mask] = object_id
    # An object hidden entirely in frame 0 by those in front cannot be tracked: drop it.
    present = set(np.unique(labels[0]).tolist())
    for object_id in range(1, count + 1):
        if object_id not in present:
            labels[labels == object_id] = 0
    return labels
