"""Boundary accuracy F: how well the contour of a predicted mask matches the true contour.

The definitions follow the DAVIS 2017 evaluation toolkit so that the numbers are the same:

* a mask's contour is the one-pixel-wide map of :func:`boundary_map` (a pixel is on the contour
  when it differs from its east, south or south-east neighbour, with the toolkit's rule for the
  last row and column);
* two contour pixels match when they are within a disk (:func:`disk`) whose radius is
  ``ceil(bound_th * image diagonal)`` pixels (8 pixels at 854x480 with the default 0.008);
  the dilation is OpenCV's, as in the toolkit;
* precision and recall of the matches give F = 2PR / (P + R), with the toolkit's conventions for
  empty contours (both empty: 1; one empty: 0).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Default tolerance, as a fraction of the image diagonal.
BOUND_TH = 0.008


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The contour of a binary mask, one pixel wide, offset half a pixel towards the origin.

    A pixel is a contour pixel when its value differs from that of its east, south or south-east
    neighbour, where pixels beyond the image count as background. The last row looks only at the
    east neighbour, the last column only at the south neighbour, and the bottom-right pixel is
    never a contour pixel, so an object that touches the right or bottom border has no contour
    along that border (nor along the top or left border, which have no west or north test).

    Args:
        mask: (H, W) binary mask (nonzero = object).

    Returns:
        (H, W) bool contour map.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {mask.shape}")
    grown = np.pad(mask, ((0, 1), (0, 1)))  # background beyond the south and east borders
    east, south, south_east = grown[:-1, 1:], grown[1:, :-1], grown[1:, 1:]
    contour = (mask != east) | (mask != south) | (mask != south_east)
    contour[-1, :] = mask[-1, :] != east[-1, :]
    contour[:, -1] = mask[:, -1] != south[:, -1]
    contour[-1, -1] = False
    return contour


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 structuring element: 1 where x^2 + y^2 <= r^2 (skimage's ``disk``)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def tolerance_pixels(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """The matching radius in pixels: ``bound_th`` itself when >= 1, else a fraction of the diagonal."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"a tolerance in pixels must be a whole number, got {bound_th}")
        return int(bound_th)
    # sqrt of the exact sum of squares, as numpy's norm computes it, so that ceil rounds alike.
    return int(math.ceil(bound_th * float(np.sqrt(float(height * height + width * width)))))


def _dilate(contour: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.dilate(contour.astype(np.uint8), kernel).astype(bool)


def f_measure(
    truth: np.ndarray, prediction: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> float:
    """Boundary F-measure of one frame of one object.

    Void pixels are removed from both masks before their contours are taken.

    Args:
        truth: (H, W) ground-truth mask (nonzero = object).
        prediction: (H, W) predicted mask.
        void: optional (H, W) mask of pixels to ignore.
        bound_th: tolerance, a fraction of the diagonal (< 1) or pixels (>= 1).

    Returns:
        F in [0, 1].
    """
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if truth.shape != prediction.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} must be one (H, W) shape")
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        truth, prediction = truth & keep, prediction & keep
    true_contour = boundary_map(truth)
    predicted_contour = boundary_map(prediction)
    n_true = int(true_contour.sum())
    n_predicted = int(predicted_contour.sum())
    if n_true == 0 and n_predicted == 0:
        return 1.0
    if n_true == 0 or n_predicted == 0:
        return 0.0
    kernel = disk(tolerance_pixels(*truth.shape, bound_th))
    precision = np.sum(predicted_contour & _dilate(true_contour, kernel)) / float(n_predicted)
    recall = np.sum(true_contour & _dilate(predicted_contour, kernel)) / float(n_true)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def boundary_scores(
    truth: np.ndarray, prediction: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> np.ndarray:
    """:func:`f_measure` of each frame: (T, H, W) masks -> (T,) float64."""
    truth = np.asarray(truth)
    if truth.ndim != 3:
        raise ValueError(f"expected (T, H, W) masks, got shape {truth.shape}")
    return np.array(
        [
            f_measure(truth[t], prediction[t], None if void is None else void[t], bound_th)
            for t in range(truth.shape[0])
        ],
        dtype=np.float64,
    )
