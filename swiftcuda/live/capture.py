"""Live frames: a capture thread that always holds only the newest frame.

A camera, a stream or a video file played at its own frame rate delivers frames on its clock, not
the engine's. :class:`LiveCapture` reads them in a thread of its own and keeps one slot: a frame that
arrives before the engine took the previous one replaces it, and the replaced frame is counted as
dropped. Nothing queues, so the time from capture to mask stays bounded however slow a step is.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from swiftcuda.errors import InputError
from swiftcuda.io.frames import DEFAULT_FPS, to_rgb

logger = logging.getLogger(__name__)

#: How long :meth:`LiveCapture.stop` waits for the capture thread (a blocked camera read may not return).
STOP_WAIT_SECONDS = 2.0

SOURCE_HELP = "give a camera index (0), an rtsp:// or http:// URL, or a video file"


class VideoCaptureLike(Protocol):
    """What :class:`LiveCapture` needs of a ``cv2.VideoCapture``."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class LiveFrame:
    """One frame as the source delivered it.

    Attributes:
        index: position in the source, from 0; every frame received counts, dropped or not.
        image: (H, W, 3) uint8 RGB.
        captured_at: ``time.perf_counter()`` when the frame arrived.
    """

    index: int
    image: np.ndarray
    captured_at: float


@dataclass(frozen=True)
class CaptureCounts:
    """Frames received from the source, handed to the caller, and dropped (replaced unseen)."""

    received: int
    handed: int
    dropped: int


class LiveCapture:
    """Reads a source in a background thread and hands out only its newest frame.

    Example::

        with open_live_source("0") as capture:      # starts the thread
            while (frame := capture.next_frame(timeout=10.0)) is not None:
                ...                                  # frames arriving meanwhile replace each other

    Args:
        capture: an opened ``cv2.VideoCapture`` (or anything with its ``read`` / ``release``); it is
            released when the thread ends.
        name: the source, for messages.
        fps: the source's frame rate (what an overlay video of it is written at).
        paced: deliver frame i at ``i / fps`` seconds after the start, as a camera would, instead
            of as fast as ``read`` returns (for a video file).
        frame_size: (H, W) of the frames to come, where the source states it reliably (a video
            file's header), so that a mask of another size is refused before anything runs.
    """

    def __init__(
        self,
        capture: VideoCaptureLike,
        name: str,
        fps: float = DEFAULT_FPS,
        paced: bool = False,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.name = name
        self.fps = fps
        self.paced = paced
        self.frame_size = frame_size
        self._capture = capture
        self._changed = threading.Condition()
        self._newest: LiveFrame | None = None
        self._received = self._handed = self._dropped = 0
        self._finished = False
        self._end_reason: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read_frames, name="swiftcuda-live-capture", daemon=True)

    # -- the caller's side -------------------------------------------------------------------------

    def start(self) -> None:
        """Start reading (once)."""
        self._thread.start()

    def next_frame(self, timeout: float) -> LiveFrame | None:
        """The newest frame not handed out yet, waiting up to ``timeout`` seconds for one.

        Returns None when the source has ended and its last frame was handed out, or when no
        frame came within ``timeout`` (then the capture stops, and :attr:`end_reason` says so).
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._newest is not None or self._finished, timeout):
                self._end(f"no frame from {self.name} for {timeout:g} s")
                self._stopping.set()
                return None
            frame, self._newest = self._newest, None
            if frame is not None:
                self._handed += 1
            return frame

    def stop(self) -> None:
        """Stop reading (or release a source never started); a frame never handed out counts as
        dropped. Safe to call more than once."""
        self._stopping.set()
        if self._thread.ident is None:
            self._capture.release()
        elif self._thread.is_alive():
            self._thread.join(STOP_WAIT_SECONDS)
            if self._thread.is_alive():
                logger.warning(
                    "the capture of %s did not stop within %g s; leaving it behind", self.name, STOP_WAIT_SECONDS
                )
        with self._changed:
            self._end("stopped")
            if self._newest is not None:
                self._newest = None
                self._dropped += 1

    @property
    def counts(self) -> CaptureCounts:
        with self._changed:
            return CaptureCounts(received=self._received, handed=self._handed, dropped=self._dropped)

    @property
    def finished(self) -> bool:
        """The source has ended (or failed, or the capture was stopped)."""
        with self._changed:
            return self._finished

    @property
    def end_reason(self) -> str | None:
        """Why the capture ended ("SOURCE ended after N frames", a failed read, ...), or None while it runs."""
        with self._changed:
            return self._end_reason

    def __enter__(self) -> LiveCapture:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- the capture thread ------------------------------------------------------------------------

    def _read_frames(self) -> None:
        reason = f"{self.name} ended"
        try:
            reason = self._deliver_until_end()
        except Exception as error:  # a failing driver or stream may raise anything: end the run, keep its work
            reason = f"{self.name} failed after {self.counts.received} frames ({type(error).__name__}: {error})"
            logger.warning("live capture: %s", reason)
        finally:
            with self._changed:
                self._end(reason)
            self._capture.release()

    def _deliver_until_end(self) -> str:
        """Read and publish frames until the source ends or :meth:`stop`; returns why it ended."""
        started = time.perf_counter()
        size: tuple[int, int] | None = None
        index = 0
        while not self._stopping.is_set():
            ok, image = self._capture.read()
            if not ok or image is None:
                return f"{self.name} ended after {index} frames"
            image = to_rgb(image, f"frame {index} of {self.name}")
            if size is None:
                size = image.shape[:2]
            elif image.shape[:2] != size:
                return (
                    f"{self.name} changed its frame size at frame {index} ({image.shape[0]}x{image.shape[1]}, "
                    f"was {size[0]}x{size[1]})"
                )
            if self.paced:
                # A camera's clock does not wait for us: frame i is due at i / fps after the start.
                if self._stopping.wait(max(0.0, started + index / self.fps - time.perf_counter())):
                    break
            self._publish(LiveFrame(index=index, image=image, captured_at=time.perf_counter()))
            index += 1
        return "stopped"

    def _publish(self, frame: LiveFrame) -> None:
        with self._changed:
            if self._newest is not None:
                self._dropped += 1
            self._newest = frame
            self._received += 1
            self._changed.notify_all()

    def _end(self, reason: str) -> None:
        """Record the first reason the capture ended (call with the lock held)."""
        if not self._finished:
            self._finished = True
            self._end_reason = reason
        self._changed.notify_all()


def live_source_file(source: str) -> Path | None:
    """The file (or folder) a live source names, or None for a camera index or a stream URL."""
    text = source.strip()
    return None if text.isdigit() or "://" in text else Path(text)


def open_live_source(source: str) -> LiveCapture:
    """Open a camera index ("0"), a stream URL ("rtsp://...", "http://...") or a video file.

    A video file is paced at its own frame rate, as a camera would deliver it; cameras and streams
    deliver at theirs. The capture thread starts on :meth:`LiveCapture.start` (or ``with``).

    Raises:
        InputError: the file does not exist, is a folder, or the source cannot be opened.
    """
    text, path = source.strip(), live_source_file(source)
    if path is not None and path.is_dir():
        raise InputError(f"--live takes a camera, a stream or a video file, not a folder ({text}): {SOURCE_HELP}")
    if path is not None and not path.is_file():
        raise InputError(f"live source not found: {text}: {SOURCE_HELP}")
    capture = cv2.VideoCapture(int(text) if text.isdigit() else text)
    if not capture.isOpened():
        capture.release()
        raise InputError(f"cannot open live source {text}: {SOURCE_HELP}, one this machine can reach")
    if path is None:
        # A hint some backends honour: keep no backlog of frames inside OpenCV either.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and 0 < fps < 1000 else DEFAULT_FPS
    frame_size = None
    if path is not None:  # a camera may announce one size and deliver another; a file's header holds
        height, width = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        frame_size = (height, width) if height > 0 and width > 0 else None
    return LiveCapture(capture, name=text, fps=fps, paced=path is not None, frame_size=frame_size)
