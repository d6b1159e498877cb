"""Trivial methods that a real one must beat, with the segmenter's interface."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class CopyFirstMask:
    """Every frame gets the last given mask: what "no tracking at all" scores.

    It has the methods :func:`swiftcuda.metrics.benchmark.segment_video` uses (``reset``, ``step``,
    ``to_labels``, ``device``), where ``step`` returns the label map itself. A later mask adds its
    objects over the ones already held, as the segmenter's does.
    """

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._labels: Tensor | None = None

    def step(self, image: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None) -> Tensor:
        if mask is not None:
            given = torch.as_tensor(np.asarray(mask), dtype=torch.int64)
            self._labels = given if self._labels is None else torch.where(given > 0, given, self._labels)
        if self._labels is None:
            raise ValueError("the first frame needs a mask")
        return self._labels

    def to_labels(self, labels: Tensor) -> Tensor:
        return labels
