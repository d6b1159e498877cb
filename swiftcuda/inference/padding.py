"""Padding frames to a multiple of the network stride and cropping results back.

The split matches the official code: the smaller half of the padding goes before (top / left),
the larger after, and the padded pixels are zero (black, before normalisation).
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor


class Padding(NamedTuple):
    """Pixels added on each side, in ``torch.nn.functional.pad`` order."""

    left: int
    right: int
    top: int
    bottom: int

    @classmethod
    def to_multiple(cls, height: int, width: int, multiple: int) -> Padding:
        """The padding that makes (height, width) multiples of ``multiple``."""
        extra_h, extra_w = -height % multiple, -width % multiple
        return cls(extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2)

    def pad(self, x: Tensor) -> Tensor:
        """Zero-pad the last two dimensions of ``x``."""
        return F.pad(x, tuple(self)) if any(self) else x

    def crop(self, x: Tensor) -> Tensor:
        """Undo :meth:`pad` on the last two dimensions of ``x`` (a view)."""
        height, width = x.shape[-2:]
        return x[..., self.top : height - self.bottom, self.left : width - self.right]
