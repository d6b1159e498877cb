"""Reading and writing label masks as PNG files (indexed with the DAVIS palette)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from swiftcuda.errors import InputError
from swiftcuda.io.palette import davis_palette, davis_palette_flat


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """An (H, W) uint8 label map from an image file.

    Indexed (palette) PNGs give their indices, grayscale images their values, and RGB images are
    mapped back through the DAVIS palette (a colour outside it is an error).

    Raises:
        InputError: the file is missing, not an image, or an RGB image with colours outside the palette.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mask not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "P" or mode == "L":
                return np.array(image, dtype=np.uint8)
            if mode in ("I", "I;16"):
                labels = np.array(image)
                if labels.min() < 0 or labels.max() > 255:
                    raise InputError(f"mask {path} holds labels outside 0..255")
                return labels.astype(np.uint8)
            rgb = np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"{path} is not a readable image ({error})") from None
    return _colours_to_labels(rgb, path)


def _colours_to_labels(rgb: np.ndarray, path: Path) -> np.ndarray:
    palette = davis_palette().astype(np.int32)
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    palette_code = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    colours, inverse = np.unique(code, return_inverse=True)
    lookup = {int(c): i for i, c in enumerate(palette_code)}
    unknown = [int(c) for c in colours if int(c) not in lookup]
    if unknown:
        first = unknown[0]
        raise InputError(
            f"mask {path} is an RGB image with colour ({first >> 16}, {(first >> 8) & 255}, {first & 255}) "
            "that is not in the DAVIS palette: save masks as indexed or grayscale PNGs of labels"
        )
    labels = np.array([lookup[int(c)] for c in colours], dtype=np.uint8)
    return labels[inverse.reshape(code.shape)]


def write_mask(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write an (H, W) label map (values 0..255) as an indexed PNG with the DAVIS palette."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("labels must be within 0..255 to fit an indexed PNG")
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    image.putpalette(davis_palette_flat())
    image.save(path, format="PNG")
