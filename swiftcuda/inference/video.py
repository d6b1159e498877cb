"""One video through the engine, frame by frame: the loop ``swiftcuda segment`` and the
``segment-many`` workers both run, so that their masks are the same by construction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from swiftcuda.errors import FrameReadError, InputError
from swiftcuda.inference.host_copy import LabelCopier
from swiftcuda.inference.segmenter import Segmenter
from swiftcuda.io.frames import Frame, FrameSource
from swiftcuda.io.masks import read_object_mask


def open_video(
    frames: str | os.PathLike,
    mask: str | os.PathLike,
    read: Callable[[str | os.PathLike], np.ndarray] = read_object_mask,
) -> tuple[FrameSource, np.ndarray]:
    """A video's frames and its first frame's labels, checked before anything runs.

    Args:
        frames: a folder of frames (natural name order) or a video file.
        mask: the first frame's labels (indexed, grayscale or DAVIS-coloured PNG; a mask of only 0
            and 255 is one object, id 1).
        read: how the mask file becomes (H, W) uint8 labels (as ``segment --mask`` by default).

    Returns:
        The frame source and the (H, W) uint8 labels of the first frame.

    Raises:
        InputError: the frames or the mask cannot be used (missing, corrupt, two frames that would
            write the same mask, a mask without objects).
    """
    source = FrameSource(frames)
    names = source.names
    if names is not None and len(set(names)) != len(names):
        raise InputError(f"two frames in {frames} share a name (e.g. a .jpg and a .png): outputs would collide")
    labels = read(mask)
    if not labels.any():
        raise InputError(f"mask {mask} has no objects (every pixel is 0): label the objects 1, 2, ...")
    return source, labels


def segment_frames(
    segmenter: Segmenter,
    frames: Iterable[Frame],
    first_mask: np.ndarray,
    on_labels: Callable[[Frame, np.ndarray], None],
    mask_origin: str | os.PathLike = "the first mask",
) -> int:
    """Segment a video from its first frame's mask on.

    Args:
        segmenter: reset here, then stepped through every frame.
        frames: the frames in order, each (H, W, 3) uint8 RGB; the first one is index 0.
        first_mask: (H, W) integer labels of frame 0 (0 = background).
        on_labels: called with (frame, (H, W) uint8 labels) for every frame, in order. On a GPU it
            is called one frame late, while the next frame is decoded and stepped.
        mask_origin: where the mask came from, for the error message.

    Returns:
        The number of frames segmented.

    Raises:
        InputError: the mask's size is not the first frame's.
        FrameReadError: a frame cannot be decoded; every frame before it has had its
            ``on_labels`` call, and ``frames_done`` says how many there were.
    """
    segmenter.reset()
    copier = LabelCopier(segmenter.device)
    count = 0
    try:
        for frame in frames:
            if frame.index == 0 and frame.image.shape[:2] != first_mask.shape:
                raise InputError(
                    f"mask {mask_origin} is {first_mask.shape[0]}x{first_mask.shape[1]} but frame {frame.name} is "
                    f"{frame.image.shape[0]}x{frame.image.shape[1]}: give the first frame's mask"
                )
            probs = segmenter.step(frame.image, mask=first_mask if frame.index == 0 else None)
            for done, labels in copier.push(frame, segmenter.to_labels(probs)):
                on_labels(done, labels)
            count += 1
    except FrameReadError as error:
        # The masks computed so far are delivered, so that a caller may keep them.
        for done, labels in copier.drain():
            on_labels(done, labels)
        raise FrameReadError(str(error), frames_done=count, cli_message=error.cli_message) from None
    for done, labels in copier.drain():
        on_labels(done, labels)
    return count


def frame_mask_path(folder: Path, frame: Frame) -> Path:
    """Where a frame's mask goes in an output folder: named after the frame."""
    return folder / f"{frame.name}.png"
