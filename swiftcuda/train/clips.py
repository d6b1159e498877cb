"""Training clips: a few frames of one video, sampled with gaps, augmented, objects relabelled.

A clip is drawn entirely from a generator seeded by (seed, step), so training that resumes from a
checkpoint draws exactly the clips the uninterrupted run would have drawn.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from swiftcuda.errors import InputError
from swiftcuda.io.frames import list_image_files, natural_key, read_image
from swiftcuda.io.masks import read_mask

logger = logging.getLogger(__name__)

#: Objects smaller than this many pixels in a clip's first frame are not trained on.
MIN_OBJECT_PIXELS = 64


@dataclass
class VideoSequence:
    """One video in memory.

    Attributes:
        name: the sequence.
        frames: (T, H, W, 3) uint8 RGB.
        labels: (T, H, W) uint8 labels, 0 background (255, void, is treated as background).
    """

    name: str
    frames: np.ndarray
    labels: np.ndarray


def load_davis_sequences(
    root: str | os.PathLike, names: list[str] | None = None, scale: float = 1.0, resolution: str = "480p"
) -> list[VideoSequence]:
    """Read every annotated sequence of a DAVIS-layout folder into memory.

    Args:
        root: folder with ``JPEGImages/<resolution>`` and ``Annotations/<resolution>``.
        names: sequences to read (default: all that have frames and masks for every frame).
        scale: resize factor applied on reading (saves memory when training at small sizes).

    Raises:
        InputError: the layout is missing, or a named sequence lacks masks.
    """
    root = Path(root)
    images_root, masks_root = root / "JPEGImages" / resolution, root / "Annotations" / resolution
    if not images_root.is_dir() or not masks_root.is_dir():
        raise InputError(
            f"{root} is not in the DAVIS layout: expected JPEGImages/{resolution} and Annotations/{resolution}"
        )
    available = sorted((p.name for p in images_root.iterdir() if p.is_dir()), key=natural_key)
    chosen = available if names is None else names
    sequences = []
    for name in chosen:
        images = list_image_files(images_root / name) if (images_root / name).is_dir() else []
        masks = [masks_root / name / f"{p.stem}.png" for p in images]
        if not images or not all(m.is_file() for m in masks):
            if names is not None:
                raise InputError(f"sequence {name} needs frames and a mask for every frame under {root}")
            logger.info("skipping %s: not every frame has a mask", name)
            continue
        frames = np.stack([_resize(read_image(p), scale, cv2.INTER_AREA) for p in images])
        labels = np.stack([_resize(read_mask(m), scale, cv2.INTER_NEAREST) for m in masks])
        labels[labels == 255] = 0
        sequences.append(VideoSequence(name, frames, labels))
    if not sequences:
        raise InputError(f"no fully annotated sequences under {root}")
    return sequences


def _resize(image: np.ndarray, scale: float, interpolation: int) -> np.ndarray:
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=interpolation)


@dataclass(frozen=True)
class ClipOptions:
    """How clips are drawn.

    Attributes:
        length: frames per clip (the first is given, the others predicted).
        max_skip: largest gap between consecutive clip frames.
        crop: (height, width) of the clip, multiples of 16.
        max_objects: most objects trained per clip.
        scale_range: random resize factor range applied before cropping.
        flip: random horizontal flips.
        colour_jitter: largest relative change of brightness and contrast.
        colour_shuffle: also permute the colour channels, scale and shift each one, and sometimes
            invert the clip, so that the model learns to match appearance rather than to
            remember the colours of the training videos.
    """

    length: int = 3
    max_skip: int = 5
    crop: tuple[int, int] = (240, 240)
    max_objects: int = 3
    scale_range: tuple[float, float] = (0.7, 1.0)
    flip: bool = True
    colour_jitter: float = 0.15
    colour_shuffle: bool = True


@dataclass
class Clip:
    """A training clip.

    Attributes:
        frames: (T, 3, H, W) float32 RGB in [0, 1].
        labels: (T, H, W) int64, 0 background and 1..K the clip's objects.
        num_objects: K.
    """

    frames: Tensor
    labels: Tensor
    num_objects: int


class ClipSampler:
    """Draws augmented clips from sequences in memory."""

    def __init__(self, sequences: list[VideoSequence], options: ClipOptions, seed: int = 0) -> None:
        if any(size % 16 for size in options.crop):
            raise InputError(f"crop {options.crop} must be multiples of 16")
        usable = [s for s in sequences if len(s.frames) >= 2]
        if not usable:
            raise InputError("training needs sequences of at least two frames")
        self.sequences, self.options, self.seed = usable, options, seed

    def batch(self, step: int, size: int) -> list[Clip]:
        """The ``size`` clips of training step ``step`` (the same for the same seed and step)."""
        rng = np.random.default_rng([self.seed, step])
        return [self._draw(rng) for _ in range(size)]

    def _draw(self, rng: np.random.Generator) -> Clip:
        for _ in range(100):
            clip = self._try_draw(rng)
            if clip is not None:
                return clip
        raise InputError("could not draw a training clip with a visible object: are the masks empty?")

    def _frame_indices(self, length: int, rng: np.random.Generator) -> list[int]:
        opts = self.options
        wanted = opts.length
        gaps = rng.integers(1, opts.max_skip + 1, wanted - 1)
        while gaps.sum() > length - 1 and gaps.max() > 1:  # shorten gaps to fit the sequence
            gaps[gaps.argmax()] -= 1
        start = int(rng.integers(0, max(length - int(gaps.sum()), 1)))
        return [min(start + int(g), length - 1) for g in np.concatenate([[0], np.cumsum(gaps)])]

    def _try_draw(self, rng: np.random.Generator) -> Clip | None:
        opts = self.options
        sequence = self.sequences[int(rng.integers(len(self.sequences)))]
        indices = self._frame_indices(len(sequence.frames), rng)
        scale = float(rng.uniform(*opts.scale_range))
        frames = [_resize(sequence.frames[i], scale, cv2.INTER_AREA) for i in indices]
        labels = [_resize(sequence.labels[i], scale, cv2.INTER_NEAREST) for i in indices]
        frames, labels = _random_crop(frames, labels, opts.crop, rng)
        first = labels[0]
        ids, counts = np.unique(first[first > 0], return_counts=True)
        ids = ids[counts >= MIN_OBJECT_PIXELS]
        if len(ids) == 0:
            return None
        ids = rng.permutation(ids)[: opts.max_objects]
        relabel = np.zeros(256, dtype=np.int64)
        relabel[ids] = np.arange(1, len(ids) + 1)
        stack = np.stack(frames).astype(np.float32) / 255.0
        if opts.flip and rng.random() < 0.5:
            stack, labels = stack[:, :, ::-1], [label[:, ::-1] for label in labels]
        if opts.colour_jitter > 0:
            brightness = rng.uniform(-opts.colour_jitter, opts.colour_jitter)
            contrast = 1 + rng.uniform(-opts.colour_jitter, opts.colour_jitter)
            stack = np.clip((stack - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
        if opts.colour_shuffle:
            stack = _shuffle_colours(stack, rng)
        return Clip(
            frames=torch.from_numpy(np.ascontiguousarray(stack.transpose(0, 3, 1, 2))),
            labels=torch.from_numpy(relabel[np.stack(labels)]),
            num_objects=len(ids),
        )


def _shuffle_colours(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random colour transform for a whole clip (T, H, W, 3) in [0, 1]: channel permutation,
    per-channel gain and offset, and an inversion one time in five."""
    stack = stack[..., rng.permutation(3)]
    gain = rng.uniform(0.7, 1.3, 3).astype(np.float32)
    offset = rng.uniform(-0.15, 0.15, 3).astype(np.float32)
    stack = np.clip(stack * gain + offset, 0.0, 1.0)
    return 1.0 - stack if rng.random() < 0.2 else stack


def _random_crop(
    frames: list[np.ndarray], labels: list[np.ndarray], crop: tuple[int, int], rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One crop window for the whole clip, preferring windows that show an object in frame 0."""
    crop_h, crop_w = crop
    height, width = labels[0].shape
    pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
    if pad_h or pad_w:
        frames = [cv2.copyMakeBorder(f, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0) for f in frames]
        labels = [cv2.copyMakeBorder(m, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0) for m in labels]
        height, width = labels[0].shape
    best = None
    for _ in range(10):
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        visible = int((labels[0][top : top + crop_h, left : left + crop_w] > 0).sum())
        if best is None or visible > best[0]:
            best = (visible, top, left)
        if visible >= MIN_OBJECT_PIXELS:
            break
    _, top, left = best
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    return [f[window] for f in frames], [m[window] for m in labels]
