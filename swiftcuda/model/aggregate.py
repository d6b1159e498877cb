"""Soft aggregation: per-object foreground probabilities -> one distribution over background and objects."""

from __future__ import annotations

import torch
from torch import Tensor

#: Probabilities are clamped to [EPS, 1 - EPS] before taking log-odds, as the official code does.
EPS = 1e-7


def soft_aggregate(object_probs: Tensor) -> Tensor:
    """Merge independent per-object probabilities into a softmax over background and objects.

    The background probability is the product of the objects' complements; each class's odds
    ``p / (1 - p)`` are then normalised (a softmax over log-odds, as in STM and SwiftNet).

    Args:
        object_probs: (O, H, W) probability of each object against everything else.

    Returns:
        (O + 1, H, W) float32 probabilities, background first, summing to one at every pixel.
    """
    probs = object_probs.float()
    background = torch.prod(1.0 - probs, dim=0, keepdim=True)
    clamped = torch.cat([background, probs], dim=0).clamp_(EPS, 1.0 - EPS)
    return torch.softmax(torch.log(clamped / (1.0 - clamped)), dim=0)
