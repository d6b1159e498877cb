"""The DAVIS colour palette (the PASCAL VOC colour map DAVIS uses for its indexed PNGs)."""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def davis_palette() -> np.ndarray:
    """(256, 3) uint8 RGB colours: label 0 black, 1 red, 2 green, 3 yellow, 4 blue, ...

    Label i's colour spreads the bits of i over the three channels, most significant bits first
    (bit 3k of i lands in red bit 7-k, bit 3k+1 in green, bit 3k+2 in blue).
    """
    labels = np.arange(256)
    colours = np.zeros((256, 3), dtype=np.uint8)
    for shift in range(8):
        for channel in range(3):
            bit = (labels >> (3 * shift + channel)) & 1
            colours[:, channel] |= (bit << (7 - shift)).astype(np.uint8)
    colours.flags.writeable = False
    return colours


def davis_palette_flat() -> list[int]:
    """The palette as the flat list Pillow's ``Image.putpalette`` takes."""
    return davis_palette().reshape(-1).tolist()
