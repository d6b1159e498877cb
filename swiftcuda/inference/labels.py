"""Probabilities to a label map: ``ids[probs.max(dim=0).indices]``, fast on every device.

The spec is :func:`reference_labels`. On the CPU, torch reduces across the outer (class) dimension
on one thread, a few percent of a bfloat16 step on a CPU with native bfloat16
(``benchmarks/bench_fps.py`` reports the labels' own time). The extension's ``labels`` kernel walks the class rows side by side over runs of
pixels, split across the OpenMP threads, in one pass. On a GPU, torch's reduction is already one
kernel at memory speed, so it is used as it is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from swiftcuda.ops import extension

__all__ = ["labels_method", "reference_labels", "to_labels"]


def reference_labels(probs: Tensor, ids: Tensor) -> Tensor:
    """(C, H, W) probabilities and (C,) integer ids -> (H, W) ids of the most probable class (the
    first on ties; a NaN counts as the maximum, as torch's max does)."""
    return ids[probs.max(dim=0).indices]


def _fused(probs: Tensor) -> bool:
    return probs.device.type == "cpu" and extension.status().loaded


def labels_method(probs: Tensor) -> str:
    """How :func:`to_labels` converts ``probs`` here, for benchmark tables."""
    return "fused CPU kernel (swiftcuda._C labels)" if _fused(probs) else "torch max(dim=0)"


def to_labels(probs: Tensor, ids: Tensor) -> Tensor:
    """:func:`reference_labels`, with the fused kernel where it runs.

    Args:
        probs: (C, H, W) floating probabilities (any layout).
        ids: (C,) integer ids on ``probs``' device; the result has their dtype.

    Returns:
        (H, W) label map.
    """
    if _fused(probs):
        return torch.ops.swiftcuda.labels(probs, ids)
    return reference_labels(probs, ids)
