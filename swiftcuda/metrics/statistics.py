"""Summary statistics of a per-frame measure: mean, recall and decay (the DAVIS definitions)."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

#: A frame counts towards the recall when its score is strictly above this.
RECALL_THRESHOLD = 0.5
#: The decay compares the first and the last of this many bins of frames.
DECAY_BINS = 4


class Statistics(NamedTuple):
    """Mean, recall and decay of one object's per-frame scores."""

    mean: float
    recall: float
    decay: float


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return float(np.nanmean(values))


def decay_bins(num_frames: int) -> list[slice]:
    """The frames of each of the :data:`DECAY_BINS` bins.

    The bin edges are ``round(linspace(1, n, bins + 1)) - 1`` (ties rounded up) and each bin runs
    from its edge to the next edge *inclusive*, so neighbouring bins share a frame. For 10 frames
    the edges are 0, 2, 5, 7, 9 and the bins are frames 0-2, 2-5, 5-7 and 7-9.

    (The toolkit stores the edges as uint8, which wraps above 256 frames; here they do not wrap.)
    """
    edges = (np.round(np.linspace(1, num_frames, DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    return [slice(int(edges[i]), int(edges[i + 1]) + 1) for i in range(DECAY_BINS)]


def statistics(values: np.ndarray) -> Statistics:
    """Mean, recall and decay of one object's per-frame scores (J or F).

    * mean: the mean over frames, NaN frames skipped;
    * recall: the fraction of frames scoring above :data:`RECALL_THRESHOLD` (0.5);
    * decay: the mean of the first quarter of the frames minus that of the last quarter
      (see :func:`decay_bins`), so a score that drops over time gives a positive decay.

    Args:
        values: (T,) per-frame scores, T >= 1.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("statistics need at least one frame")
    mean = _nanmean(values)
    recall = _nanmean(values > RECALL_THRESHOLD)
    bins = decay_bins(values.size)
    decay = _nanmean(values[bins[0]]) - _nanmean(values[bins[-1]])
    return Statistics(mean=mean, recall=recall, decay=decay)
