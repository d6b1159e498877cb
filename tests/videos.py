"""Small synthetic videos with known masks for engine and command-line tests.

Textured ellipses move and bounce over a drifting textured background; later objects occlude
earlier ones. Deterministic for a seed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class SyntheticVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    labels: np.ndarray  # (T, H, W) int64 object ids, 0 = background


def _texture(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """(height, width, 3) float texture: coarse random colours, smoothly upsampled."""
    coarse = rng.uniform(0, 255, (max(height // cell, 2), max(width // cell, 2), 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def make_video(
    num_frames: int = 8,
    height: int = 83,
    width: int = 117,
    object_ids: tuple[int, ...] = (1, 2),
    appear: dict[int, int] | None = None,
    seed: int = 0,
) -> SyntheticVideo:
    """A video of ``len(object_ids)`` moving objects.

    Args:
        appear: object id -> first frame it is visible (default: all from frame 0).
    """
    rng = np.random.default_rng(seed)
    appear = appear or {}
    margin = 24
    background = _texture(rng, height + 2 * margin, width + 2 * margin, cell=9)
    drift = rng.uniform(-1.5, 1.5, 2)
    objects = []
    for object_id in object_ids:
        radii = rng.uniform(0.12, 0.22, 2) * (height, width)
        objects.append(
            {
                "id": object_id,
                "centre": rng.uniform(0.3, 0.7, 2) * (height, width),
                "velocity": rng.uniform(-3, 3, 2),
                "radii": radii,
                "texture": _texture(rng, height, width, cell=5) * 0.5 + rng.uniform(0, 128, 3),
            }
        )
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    labels = np.zeros((num_frames, height, width), dtype=np.int64)
    for t in range(num_frames):
        dy, dx = np.clip(np.round(drift * t).astype(int) + margin, 0, 2 * margin)
        canvas = background[dy : dy + height, dx : dx + width].copy()
        for obj in objects:
            if t < appear.get(obj["id"], 0):
                continue
            cy, cx = obj["centre"] + obj["velocity"] * t
            cy, cx = np.clip(cy, 0, height - 1), np.clip(cx, 0, width - 1)
            ry, rx = obj["radii"] * (1 + 0.1 * np.sin(t / 3))
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            canvas[inside] = obj["texture"][inside]
            labels[t][inside] = obj["id"]
        frames[t] = np.clip(canvas, 0, 255).astype(np.uint8)
    return SyntheticVideo(frames=frames, labels=labels)


def undecodable_png(image: np.ndarray) -> bytes:
    """A PNG of (H, W, 3) ``image`` whose header reads, size included, but whose pixels do not
    decode: its compressed data garbled and the chunk's checksum recomputed, so that only decoding
    finds the damage (as for a frame damaged on disk after it was written)."""
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    data = bytearray(encoded.tobytes())
    start = data.index(b"IDAT")
    length = int.from_bytes(data[start - 4 : start], "big")
    middle = start + 4 + length // 3
    data[middle : middle + 16] = bytes(b ^ 0xA5 for b in data[middle : middle + 16])
    data[start + 4 + length : start + 8 + length] = zlib.crc32(bytes(data[start : start + 4 + length])).to_bytes(
        4, "big"
    )
    return bytes(data)
