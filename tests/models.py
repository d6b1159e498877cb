"""Randomly initialised models for tests (there are no trained weights in the test suite)."""

from __future__ import annotations

from swiftcuda import SwiftNet
from swiftcuda.model.init import lively_random_init


def random_swiftnet(seed: int = 0, variant: str = "r18") -> SwiftNet:
    """A SwiftNet in eval mode with lively random weights (see :func:`lively_random_init`)."""
    return lively_random_init(SwiftNet(variant), seed).eval()
