"""The frames of the video being annotated: pictures for the page, decoded frames for the engine.

The page asks for frames in any order and must never wait on the engine, so every frame has a
picture a browser shows as it is: a folder's own JPEG/PNG/WebP/BMP files (read from disk, never
decoded here), or, for a video file or other formats, a JPEG made once when the session opens and
kept in the session folder. The engine reads frames in order from any frame on, decoded exactly as
``swiftcuda segment`` decodes them (:class:`~swiftcuda.io.frames.FrameSource`), so its masks are the
same.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from swiftcuda.errors import InputError
from swiftcuda.io.frames import Frame, FrameSource, list_image_files, read_image

logger = logging.getLogger(__name__)

#: Image files browsers show as they are, and their media types.
BROWSER_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
#: Quality of the JPEG pictures made for the page (pictures only: the engine never reads them).
PICTURE_QUALITY = 90
_PICTURES_INDEX = "index.json"


class VideoFrames:
    """The frames of INPUT (a folder of frames or a video file), as ``segment`` reads them.

    Args:
        path: the folder of frames or the video file.
        pictures: the folder for the pictures made for the page (a video's frames, or images a
            browser cannot show); made when needed, reused when it already holds them.
        progress: called with (done, total) while pictures are made (total 0 when unknown).

    Raises:
        InputError: the input is missing, holds no frames, has frames of different sizes or two
            frames with one name, or cannot be decoded.
    """

    def __init__(
        self, path: str | os.PathLike, pictures: str | os.PathLike, progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.path = Path(path)
        self._source = FrameSource(self.path)
        self._pictures = Path(pictures)
        self.fps = self._source.fps
        if self._source.is_video:
            self._files: list[Path] | None = None
            self.names = self._make_video_pictures(progress)
            first = cv2.imread(str(self._picture_path(0)), cv2.IMREAD_COLOR)
            self.size: tuple[int, int] = first.shape[:2]
        else:
            self._files = list_image_files(self.path)
            self.names = [path.stem for path in self._files]
            if len(set(self.names)) != len(self.names):
                raise InputError(
                    f"two frames in {self.path} share a name (e.g. a .jpg and a .png): outputs would collide"
                )
            self.size = read_image(self._files[0]).shape[:2]
        self._root = self.path.resolve()
        self._encoded = functools.lru_cache(maxsize=32)(self._encode)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_video(self) -> bool:
        return self._files is None

    def check_index(self, index: int) -> None:
        """Raise an :class:`IndexError` naming the range unless ``index`` is a frame."""
        if not 0 <= index < len(self.names):
            raise IndexError(f"frame {index} is out of range: the video has frames 0 to {len(self.names) - 1}")

    # -- for the page --------------------------------------------------------------------------

    def picture(self, index: int) -> tuple[Path | bytes, str]:
        """Frame ``index`` as a browser shows it: a file (or bytes) and its media type."""
        self.check_index(index)
        if self._files is None:
            return self._picture_path(index), "image/jpeg"
        path = self._files[index]
        media_type = BROWSER_TYPES.get(path.suffix.lower())
        # Only files inside INPUT are served as they are (a link may point anywhere).
        if media_type is not None and self._root in path.resolve().parents:
            return path, media_type
        return self._encoded(index), "image/jpeg"

    def _encode(self, index: int) -> bytes:
        image = cv2.cvtColor(read_image(self._files[index]), cv2.COLOR_RGB2BGR)
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, PICTURE_QUALITY])[1].tobytes()

    def image(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB, for drawing tools (a video's: from its picture)."""
        self.check_index(index)
        if self._files is not None:
            return read_image(self._files[index])
        return cv2.cvtColor(cv2.imread(str(self._picture_path(index)), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    # -- for the engine ------------------------------------------------------------------------

    def iter_from(self, start: int) -> Iterator[Frame]:
        """The frames from ``start`` to the end, in order, decoded as ``segment`` decodes them."""
        self.check_index(start)
        if self._files is None:
            yield from itertools.islice(self._source, start, None)
            return
        for index in range(start, len(self._files)):
            image = read_image(self._files[index])
            if image.shape[:2] != self.size:
                raise InputError(
                    f"frame {self.names[index]} is {image.shape[0]}x{image.shape[1]} but the first frame is "
                    f"{self.size[0]}x{self.size[1]}: all frames must have one size"
                )
            yield Frame(index=index, name=self.names[index], image=image)

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_from(0)

    # -- a video's pictures --------------------------------------------------------------------

    def _picture_path(self, index: int) -> Path:
        return self._pictures / f"{index:06d}.jpg"

    def _video_identity(self) -> dict:
        stat = self.path.stat()
        return {"video": str(self.path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns}

    def _make_video_pictures(self, progress: Callable[[int, int], None] | None) -> list[str]:
        """Decode the video once, writing a picture per frame (skipped when they are already there)."""
        index_file = self._pictures / _PICTURES_INDEX
        identity = self._video_identity()
        try:
            known = json.loads(index_file.read_text())
            if known.get("identity") == identity and all(
                self._picture_path(i).is_file() for i in range(known["frames"])
            ):
                return [f"{i:05d}" for i in range(known["frames"])]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self._pictures.mkdir(parents=True, exist_ok=True)
        total, names = len(self._source), []
        for frame in self._source:
            image = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
            encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, PICTURE_QUALITY])[1]
            self._picture_path(frame.index).write_bytes(encoded.tobytes())
            names.append(frame.name)
            if progress is not None:
                progress(len(names), total)
        if not names:
            raise InputError(f"video {self.path} has no decodable frame")
        temporary = index_file.with_suffix(".partial")
        temporary.write_text(json.dumps({"identity": identity, "frames": len(names)}))
        os.replace(temporary, index_file)
        return names
