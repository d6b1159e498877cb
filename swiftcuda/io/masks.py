"""Reading and writing label masks as PNG files (indexed with the DAVIS palette).

A mask of only 0 and 255 is the usual way to draw one object (a black and white image), but in
DAVIS label maps 255 marks "void", pixels no tool scores. :func:`read_object_mask`, which reads the
masks a user gives the engine, reads such a mask as one object with id 1 and says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from swiftcuda.errors import InputError
from swiftcuda.io.palette import davis_palette, davis_palette_flat

logger = logging.getLogger(__name__)

#: The value of the object in a black and white mask (and DAVIS's "void" label).
BINARY_FOREGROUND = 255
_WHITE = (255 << 16) | (255 << 8) | 255


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """An (H, W) uint8 label map from an image file.

    Indexed (palette) PNGs give their indices, grayscale images their values, 1-bit images 0 and 1,
    and RGB images are mapped back through the DAVIS palette (a colour outside it is an error),
    except that a black and white RGB image reads as its grayscale twin (0 and 255). The values are
    returned as stored; :func:`read_object_mask` reads a mask given as the objects to segment.

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
            if mode == "1":
                return np.array(image, dtype=np.uint8)
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


def is_binary_mask(labels: np.ndarray) -> bool:
    """Whether (H, W) labels hold only 0 and 255, and some 255: a black and white mask."""
    values = np.unique(labels)
    return bool(values.size) and values[-1] == BINARY_FOREGROUND and set(values.tolist()) <= {0, BINARY_FOREGROUND}


def binary_as_object(labels: np.ndarray) -> np.ndarray:
    """Labels of a black and white mask (:func:`is_binary_mask`) as one object, id 1; others unchanged."""
    return (labels == BINARY_FOREGROUND).astype(np.uint8) if is_binary_mask(labels) else labels


def read_object_mask(path: str | os.PathLike, warn: bool = True) -> np.ndarray:
    """The (H, W) uint8 labels of a mask given as the objects to segment (0 = background).

    As :func:`read_mask`, except that a mask of only 0 and 255 is one object with id 1 (with a
    warning, since the masks written then label it 1), not an object 255 that DAVIS tools would
    read as void.

    Args:
        warn: say so when a mask of 0 and 255 is read as object 1 (False for a mask read again).

    Raises:
        InputError: as :func:`read_mask`.
    """
    labels = read_mask(path)
    if not is_binary_mask(labels):
        return labels
    (logger.warning if warn else logger.debug)(
        "mask %s holds only 0 and 255: read as one object with id 1, the id its masks are written with "
        "(255 is 'void' to DAVIS tools)",
        path,
    )
    return binary_as_object(labels)


def _colours_to_labels(rgb: np.ndarray, path: Path) -> np.ndarray:
    palette = davis_palette().astype(np.int32)
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    palette_code = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    colours, inverse = np.unique(code, return_inverse=True)
    lookup = {int(c): i for i, c in enumerate(palette_code)}
    unknown = [int(c) for c in colours if int(c) not in lookup]
    if unknown == [_WHITE] and set(colours.tolist()) <= {0, _WHITE}:
        return np.where(code == _WHITE, BINARY_FOREGROUND, 0).astype(np.uint8)
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
