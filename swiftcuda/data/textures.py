"""Procedural colour textures for synthetic videos: noise, stripes, cells, dots and plaid.

Every texture is drawn from a palette of a few related colours (one hue family), so that two
textures with well separated hues are told apart by colour statistics as well as by pattern,
while neither is a flat colour. Everything is drawn from the given random generator.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Texture = np.ndarray  # (H, W, 3) float32 RGB in [0, 255]


def palette(rng: np.random.Generator, hue: float, size: int = 3) -> np.ndarray:
    """(size, 3) float32 RGB colours around one hue.

    Args:
        hue: in degrees [0, 360); the colours stay within 15 degrees of it and vary in saturation
            and brightness, from dark to light.
    """
    hues = (hue + rng.uniform(-15, 15, size)) % 360
    saturation = rng.uniform(0.45, 1.0, size)
    value = np.sort(rng.uniform(0.25, 1.0, size))
    value[-1] = max(value[-1], value[0] + 0.35)  # at least one dark-to-light step
    hsv = np.stack([hues / 2.0, saturation * 255, np.minimum(value, 1.0) * 255], axis=1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    return rgb.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """(H, W) float32 noise in about [0, 1], with features about ``cell`` pixels wide."""
    rows, cols = max(int(height / cell) + 2, 2), max(int(width / cell) + 2, 2)
    coarse = rng.random((rows, cols), dtype=np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _fractal(rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 4) -> np.ndarray:
    """(H, W) float32 multi-octave noise normalised to [0, 1]."""
    total = np.zeros((height, width), np.float32)
    for octave in range(octaves):
        total += _smooth_noise(rng, height, width, max(cell / 2**octave, 1.0)) / 2**octave
    low, high = float(total.min()), float(total.max())
    return (total - low) / max(high - low, 1e-6)


def _ramp(values: np.ndarray, colours: np.ndarray) -> Texture:
    """Map (H, W) values in [0, 1] through a piecewise-linear colour ramp."""
    stops = np.linspace(0.0, 1.0, len(colours))
    return np.stack([np.interp(values, stops, colours[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def noise_texture(rng: np.random.Generator, height: int, width: int, colours: np.ndarray, scale: float) -> Texture:
    """Cloudy multi-octave noise through the palette."""
    return _ramp(_fractal(rng, height, width, cell=scale * rng.uniform(0.6, 1.4)), colours)


def _stripe_field(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    angle = rng.uniform(0, np.pi)
    period = scale * rng.uniform(0.35, 0.8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    warp = (_smooth_noise(rng, height, width, scale * 2) - 0.5) * rng.uniform(0, 2.5 * np.pi)
    phase = 2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + warp
    return 0.5 + 0.5 * np.sin(phase)


def stripe_texture(rng: np.random.Generator, height: int, width: int, colours: np.ndarray, scale: float) -> Texture:
    """Wavy stripes at a random angle, with fine grain."""
    values = 0.8 * _stripe_field(rng, height, width, scale) + 0.2 * _smooth_noise(rng, height, width, scale / 8)
    return _ramp(np.clip(values, 0, 1), colours)


def plaid_texture(rng: np.random.Generator, height: int, width: int, colours: np.ndarray, scale: float) -> Texture:
    """Two crossing stripe patterns (a woven look)."""
    values = 0.5 * _stripe_field(rng, height, width, scale) + 0.5 * _stripe_field(rng, height, width, scale)
    return _ramp(np.clip(values, 0, 1), colours)


def cell_texture(rng: np.random.Generator, height: int, width: int, colours: np.ndarray, scale: float) -> Texture:
    """Voronoi cells, each a colour of the palette with its own shade, darker at their borders."""
    area = (scale * rng.uniform(0.4, 0.9)) ** 2
    count = int(np.clip(height * width / area, 8, 4000))
    seeds = np.ones((height, width), np.uint8)
    ys, xs = rng.integers(0, height, count), rng.integers(0, width, count)
    seeds[ys, xs] = 0
    distance, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    shades = colours[rng.integers(0, len(colours), labels.max() + 1)] * rng.uniform(0.75, 1.15, (labels.max() + 1, 1))
    texture = shades[labels]
    border = np.exp(-distance / max(np.sqrt(area) * 0.35, 1.0))[..., None]  # 1 at the seed, falling off
    return np.clip(texture * (0.65 + 0.35 * border), 0, 255).astype(np.float32)


def dot_texture(rng: np.random.Generator, height: int, width: int, colours: np.ndarray, scale: float) -> Texture:
    """Discs of the palette's colours scattered over a noise ground."""
    texture = _ramp(_fractal(rng, height, width, cell=scale), colours[:2])
    radius = scale * rng.uniform(0.08, 0.2)
    count = int(np.clip(height * width / (radius * 3.2) ** 2, 4, 20000))
    for _ in range(count):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = colours[int(rng.integers(0, len(colours)))] * rng.uniform(0.8, 1.2)
        r = max(int(radius * rng.uniform(0.6, 1.4)), 1)
        cv2.circle(texture, centre, r, tuple(float(c) for c in np.clip(colour, 0, 255)), -1, cv2.LINE_AA)
    return texture


#: Texture families by name.
FAMILIES: dict[str, Callable[..., Texture]] = {
    "noise": noise_texture,
    "stripes": stripe_texture,
    "plaid": plaid_texture,
    "cells": cell_texture,
    "dots": dot_texture,
}


def make_texture(rng: np.random.Generator, height: int, width: int, hue: float, family: str, scale: float) -> Texture:
    """A (height, width, 3) float32 texture of one family around one hue.

    Args:
        scale: the size of its features in pixels (cells, stripe periods, noise blobs).
    """
    colours = palette(rng, hue)
    return FAMILIES[family](rng, height, width, colours, max(scale, 2.0))
