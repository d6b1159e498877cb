"""An on-screen preview of a live run (OpenCV highgui), only where a display exists.

A headless machine (no ``DISPLAY`` / ``WAYLAND_DISPLAY`` on Linux) or an OpenCV built without a
GUI (``opencv-python-headless``) simply gets no window: the run is the same without it.
"""

from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Keys that end the run from the window: q and Esc.
STOP_KEYS = frozenset({ord("q"), 27})


def display_available() -> bool:
    """Whether a window could appear: always on Windows and macOS, with an X11 or Wayland display on Linux."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class PreviewWindow:
    """A window that shows each segmented frame; q or Esc in it asks the run to stop."""

    def __init__(self, title: str) -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image: np.ndarray) -> bool:
        """Show an (H, W, 3) uint8 RGB image; returns False when the user asked to stop."""
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(1) & 0xFF) not in STOP_KEYS

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def open_preview(title: str) -> PreviewWindow | None:
    """A preview window, or None where none can appear (no display, or OpenCV without a GUI)."""
    if not display_available():
        return None
    try:
        return PreviewWindow(title)
    except cv2.error as error:
        logger.info("no preview window: this OpenCV has no GUI support (%s)", str(error).strip().splitlines()[-1])
        return None
