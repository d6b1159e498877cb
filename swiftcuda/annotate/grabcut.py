"""A box drawn around an object, refined to the object by OpenCV's GrabCut."""

from __future__ import annotations

import cv2
import numpy as np

from swiftcuda.annotate.errors import RequestError

#: GrabCut iterations (each re-fits the colour models and re-cuts).
ITERATIONS = 5
#: Background kept around the box for GrabCut's background model, as a fraction of the box's
#: larger side (at least MIN_MARGIN pixels); the rest of the frame is left out, which makes the cut
#: fast on large frames without changing what it finds inside the box.
MARGIN = 0.25
MIN_MARGIN = 16


def grabcut_box(image: np.ndarray, box: tuple[int, int, int, int], iterations: int = ITERATIONS) -> np.ndarray:
    """The object inside ``box``, as GrabCut separates it from what surrounds it.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        box: (x0, y0, x1, y1) pixel corners, any order; clipped to the frame.
        iterations: GrabCut iterations.

    Returns:
        (H, W) bool mask of the object (within the box).

    Raises:
        RequestError: the box is less than 2 pixels wide or high inside the frame.
    """
    height, width = image.shape[:2]
    x0, x1 = sorted((int(box[0]), int(box[2])))
    y0, y1 = sorted((int(box[1]), int(box[3])))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise RequestError(
            f"the box {list(box)} is less than 2 pixels wide or high inside the {width}x{height} frame: draw a larger box"
        )
    margin = max(MIN_MARGIN, int(MARGIN * max(x1 - x0, y1 - y0)))
    cx0, cy0 = max(x0 - margin, 0), max(y0 - margin, 0)
    cx1, cy1 = min(x1 + margin, width), min(y1 + margin, height)
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1, ::-1])  # GrabCut takes BGR
    labels = np.zeros(crop.shape[:2], np.uint8)
    rect = (x0 - cx0, y0 - cy0, x1 - x0, y1 - y0)
    if rect[2] >= crop.shape[1] and rect[3] >= crop.shape[0]:
        # A box over the whole frame leaves no background to learn from: assume a thin border.
        rect = (1, 1, max(crop.shape[1] - 2, 1), max(crop.shape[0] - 2, 1))
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means draws from this thread's generator: the same box, the same mask
    cv2.grabCut(crop, labels, rect, background, foreground, iterations, cv2.GC_INIT_WITH_RECT)
    mask = np.zeros((height, width), bool)
    mask[cy0:cy1, cx0:cx1] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return mask
