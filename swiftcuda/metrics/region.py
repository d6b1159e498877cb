"""Region similarity J: the Jaccard index of a predicted and a true object mask, void excluded."""

from __future__ import annotations

import numpy as np


def jaccard(truth: np.ndarray, prediction: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """Intersection over union of two binary masks, per frame.

    Pixels marked void count neither in the intersection nor in the union. When the union is
    empty (the object is absent from both masks, or only in void pixels) the frame scores 1.

    Args:
        truth: (..., H, W) ground-truth mask of one object (nonzero = object).
        prediction: (..., H, W) predicted mask of the same object, same shape.
        void: optional (..., H, W) mask of pixels to ignore.

    Returns:
        (...) float64 J per frame (a 0-d array for a single (H, W) frame).
    """
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    intersection = truth & prediction
    union = truth | prediction
    if void is not None:
        void = np.asarray(void, dtype=bool)
        if void.shape != truth.shape:
            raise ValueError(f"void {void.shape} and truth {truth.shape} differ in shape")
        intersection &= ~void
        union &= ~void
    inter_count = intersection.sum(axis=(-2, -1))
    union_count = union.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.asarray(inter_count / union_count, dtype=np.float64)
    scores[union_count == 0] = 1.0
    return scores
