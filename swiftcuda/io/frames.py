"""Reading the frames of a video: a folder of images (by name) or a video file (OpenCV)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from swiftcuda.errors import FrameReadError, InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
#: Frame rate assumed for a folder of frames, or a video that does not state one.
DEFAULT_FPS = 24.0


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: position in the video, from 0.
        name: what its outputs are named after (the image's stem, or the zero-padded index).
        image: (H, W, 3) uint8 RGB.
    """

    index: int
    name: str
    image: np.ndarray


def natural_key(name: str) -> list:
    """Sort key that orders "frame2" before "frame10"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def to_rgb(image: np.ndarray, origin: str) -> np.ndarray:
    """An OpenCV image (gray, BGR or BGRA; 8 or 16 bit) as (H, W, 3) uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"{origin} has {image.dtype} pixels: only 8- and 16-bit images are supported")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    raise InputError(f"{origin} has {image.shape[2]} channels: expected gray, RGB or RGBA")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB.

    Raises:
        FrameReadError: the file cannot be decoded.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise FrameReadError(f"cannot read frame {path}: the file is corrupt or not an image")
    return to_rgb(image, str(path))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, from its header (cheap: nothing is decoded), or by decoding it
    when Pillow cannot read the header (a format only OpenCV reads).

    Raises:
        FrameReadError: the file is not an image.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
        return height, width
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return read_image(path).shape[:2]


def list_image_files(folder: Path) -> list[Path]:
    """The image files of a folder, in natural name order."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def check_frame_files(paths: list[Path]) -> None:
    """Check, from their headers, that the frame files are images all of one size (cheap: before
    the first step, so that a broken frame is not found minutes into a run).

    Raises:
        FrameReadError: a file is not an image.
        InputError: a frame's size is not the first one's.
    """
    first = None
    for path in paths:
        size = image_size(path)
        if first is None:
            first = size
        elif size != first:
            raise InputError(_size_changed(path.stem, size, first))


class FrameSource:
    """The frames of a folder of images or of a video file, decoded one at a time.

    Every frame must have the first frame's size; a frame that cannot be decoded or that changes
    size raises an :class:`InputError` naming it. Both are checked when the source opens, from the
    image files' headers (and, for a video file, from its first frame), so that such a frame is
    found before any work; a frame whose header reads but whose pixels do not decode is found
    when it is reached (a :class:`FrameReadError`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._files: list[Path] | None = None
        if self.path.is_dir():
            self._files = list_image_files(self.path)
            if not self._files:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise InputError(f"no frames in {self.path}: expected image files ({suffixes})")
            check_frame_files(self._files)
        elif self.path.is_file():
            self._check_video()
        else:
            raise InputError(f"input not found: {self.path}")

    @property
    def is_video(self) -> bool:
        return self._files is None

    @property
    def fps(self) -> float:
        """The video's frame rate, or :data:`DEFAULT_FPS` for a folder of frames."""
        if self._files is not None:
            return DEFAULT_FPS
        capture = cv2.VideoCapture(str(self.path))
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
        finally:
            capture.release()
        return fps if fps and fps > 0 else DEFAULT_FPS

    @property
    def names(self) -> list[str] | None:
        """The frames' output names when known before decoding (a folder), else None."""
        return None if self._files is None else [path.stem for path in self._files]

    def __len__(self) -> int:
        """Number of frames (for a video, as its container reports it; 0 when unknown)."""
        if self._files is not None:
            return len(self._files)
        capture = cv2.VideoCapture(str(self.path))
        try:
            return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        finally:
            capture.release()

    def _check_video(self) -> None:
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise InputError(f"cannot open {self.path} as a video (and it is not a folder of frames)")
            ok, _ = capture.read()
            if not ok:
                raise InputError(f"video {self.path} has no decodable frame")
        finally:
            capture.release()

    def __iter__(self) -> Iterator[Frame]:
        frames = self._iter_folder() if self._files is not None else self._iter_video()
        size = None
        for frame in frames:
            if size is None:
                size = frame.image.shape[:2]
            elif frame.image.shape[:2] != size:
                raise InputError(_size_changed(frame.name, frame.image.shape[:2], size))
            yield frame

    def _iter_folder(self) -> Iterator[Frame]:
        for index, path in enumerate(self._files):
            yield Frame(index=index, name=path.stem, image=read_image(path))

    def _iter_video(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield Frame(index=index, name=f"{index:05d}", image=to_rgb(image, f"frame {index} of {self.path}"))
                index += 1
        finally:
            capture.release()


def _size_changed(name: str, size: tuple[int, int], first: tuple[int, int]) -> str:
    return (
        f"frame {name} is {size[0]}x{size[1]} but the first frame is {first[0]}x{first[1]}: "
        "all frames must have one size"
    )
