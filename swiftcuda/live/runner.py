"""The live loop: segment the newest frame, write its mask, show it, report.

The engine never waits on a queue: each step takes the newest frame the capture holds, so a frame
is at most one step old when its step starts and its capture-to-mask latency stays below about two
step times, however long the run. Frames that arrive meanwhile are dropped (and counted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swiftcuda.errors import InputError
from swiftcuda.inference import Segmenter
from swiftcuda.io.masks import write_mask
from swiftcuda.io.overlay import OverlayVideoWriter, draw_overlay
from swiftcuda.live.capture import LiveCapture
from swiftcuda.live.display import PreviewWindow
from swiftcuda.live.stats import LatencyHistogram, LiveReport

logger = logging.getLogger(__name__)

#: Seconds without a new frame after which a source counts as stalled (at least three frame periods).
STALL_SECONDS = 10.0
#: Seconds between progress lines (logged at INFO level: ``swiftcuda -v``).
REPORT_EVERY_SECONDS = 5.0
#: Steady-state steps of the warm-up, after the first step with a mask.
WARM_UP_STEPS = 2


@dataclass(frozen=True)
class LiveMask:
    """The engine's answer for one live frame.

    Attributes:
        index: the frame's position in the source (dropped frames included), from 0.
        image: (H, W, 3) uint8 RGB frame.
        labels: (H, W) uint8 object ids, 0 = background.
        latency: seconds from the frame's capture to its labels on the host.
    """

    index: int
    image: np.ndarray
    labels: np.ndarray
    latency: float


def check_mask_size(capture: LiveCapture, first_mask: np.ndarray, frame_size: tuple[int, int] | None = None) -> None:
    """Refuse a first mask that is not the size of the frames (``frame_size``, or the size the
    source states; nothing to check when neither is known).

    Raises:
        InputError: the sizes differ.
    """
    frame_size = frame_size or capture.frame_size
    if frame_size is not None and tuple(frame_size) != first_mask.shape:
        raise InputError(
            f"the mask is {first_mask.shape[0]}x{first_mask.shape[1]} but {capture.name} delivers "
            f"{frame_size[0]}x{frame_size[1]} frames: give a mask of the live frames' size"
        )


def warm_up(segmenter: Segmenter, first_mask: np.ndarray) -> None:
    """Do the engine's first-use work before the clock runs, then forget the frames.

    On a CPU the first step at a new size measures the convolution algorithms (seconds): done
    during a live run, it would drop the video's first seconds. A blank frame of the mask's size
    does the same work; :meth:`Segmenter.reset` then leaves no trace of it but the tuned choices.

    Args:
        first_mask: (H, W) labels of the first frame to come.
    """
    blank = np.full((*first_mask.shape, 3), 128, dtype=np.uint8)
    segmenter.reset()
    segmenter.step(blank, mask=first_mask)
    for _ in range(WARM_UP_STEPS):
        segmenter.to_labels(segmenter.step(blank))
    segmenter.reset()


def segment_live(
    capture: LiveCapture, segmenter: Segmenter, first_mask: np.ndarray, stall_timeout: float = STALL_SECONDS
) -> Iterator[LiveMask]:
    """Segment the newest frame of a started capture, again and again, until it ends.

    Args:
        capture: a started :class:`LiveCapture`.
        segmenter: a segmenter at the start of a video (fresh or reset).
        first_mask: (H, W) labels of the first frame processed (whatever its source index).
        stall_timeout: seconds without a new frame after which the source counts as ended.

    Yields:
        One :class:`LiveMask` per processed frame, in source order.

    Raises:
        InputError: the first frame is not the mask's size.
    """
    first = True
    while (frame := capture.next_frame(stall_timeout)) is not None:
        if first:
            check_mask_size(capture, first_mask, frame.image.shape[:2])
        probs = segmenter.step(frame.image, mask=first_mask if first else None)
        # Synchronous copy: latency, not throughput, is what a live run minimises.
        labels = segmenter.to_labels(probs).to(torch.uint8).cpu().numpy()
        yield LiveMask(frame.index, frame.image, labels, time.perf_counter() - frame.captured_at)
        first = False


class HeldOverlay:
    """Writes overlays at the source's pace: each processed frame stays on screen until the next
    one, so the overlay video lasts as long as the source and shows what a viewer saw live."""

    def __init__(self, writer: OverlayVideoWriter) -> None:
        self.writer = writer
        self._last: np.ndarray | None = None
        self._next_index = 0

    def write(self, index: int, image: np.ndarray) -> None:
        """Add the overlay of source frame ``index``, (H, W, 3) uint8 RGB."""
        self._hold_until(index)
        self.writer.write(image)
        self._last, self._next_index = image, index + 1

    def finish(self, received: int) -> None:
        """Hold the last overlay until the end of the source (``received`` frames)."""
        self._hold_until(received)

    def _hold_until(self, index: int) -> None:
        if self._last is not None:
            for _ in range(index - self._next_index):
                self.writer.write(self._last)
        self._next_index = max(self._next_index, index)


def run_live(
    capture: LiveCapture,
    segmenter: Segmenter,
    first_mask: np.ndarray,
    out_dir: Path,
    *,
    overlay: OverlayVideoWriter | None = None,
    window: PreviewWindow | None = None,
    report_every: float = REPORT_EVERY_SECONDS,
    stall_timeout: float | None = None,
) -> LiveReport:
    """Warm up, start the capture, and segment it live until it ends, fails or is stopped.

    Writes each processed frame's mask to ``out_dir/{index:05d}.png`` (named by source index),
    optionally its overlay (held until the next processed frame) and a preview window. Ctrl-C
    and q / Esc in the window end the run like the end of the source: what was done is kept.

    Args:
        capture: an opened, not yet started, :class:`LiveCapture`; it is stopped at the end.
        segmenter: a segmenter configured for the run (it is reset first).
        first_mask: (H, W) labels of the first frame processed.
        out_dir: an existing folder for the masks.
        overlay: writer for the overlay video, at the source's frame rate.
        window: preview window (None: no window).
        report_every: seconds between progress lines, logged at INFO level.
        stall_timeout: seconds without a frame that end the run (None: :data:`STALL_SECONDS`, or
            three frame periods of a slower source).

    Returns:
        The run's counts, latencies and end reason.

    Raises:
        InputError: the mask is not the size of the frames.
    """
    stall_timeout = stall_timeout if stall_timeout is not None else max(STALL_SECONDS, 3 / capture.fps)
    check_mask_size(capture, first_mask)
    warm_up(segmenter, first_mask)
    held = HeldOverlay(overlay) if overlay is not None else None
    total, recent = LatencyHistogram(), LatencyHistogram()
    stopped_by: str | None = None
    started = last_report = time.perf_counter()
    with capture:
        try:
            for result in segment_live(capture, segmenter, first_mask, stall_timeout):
                write_mask(out_dir / f"{result.index:05d}.png", result.labels)
                total.add(result.latency)
                recent.add(result.latency)
                if held is not None or window is not None:
                    drawn = draw_overlay(result.image, result.labels)
                    if held is not None:
                        held.write(result.index, drawn)
                    if window is not None and not window.show(drawn):
                        stopped_by = "stopped from the window"
                        break
                if time.perf_counter() - last_report >= report_every:
                    counts = capture.counts
                    logger.info(
                        "live: %d received, %d processed, %d dropped; last %.1f s: %s",
                        counts.received,
                        total.count,
                        counts.dropped,
                        time.perf_counter() - last_report,
                        recent.describe(),
                    )
                    recent, last_report = LatencyHistogram(), time.perf_counter()
        except KeyboardInterrupt:
            # Ctrl-C is how a camera run is meant to end: keep what was done.
            stopped_by = "stopped by Ctrl-C"
    seconds = time.perf_counter() - started
    received = capture.counts.received
    if held is not None:
        held.finish(received)
    return LiveReport(
        received=received,
        processed=total.count,
        dropped=received - total.count,
        latency=total,
        seconds=seconds,
        end_reason=stopped_by or capture.end_reason or "stopped",
    )
