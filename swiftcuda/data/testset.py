"""Test videos with known masks: textures painted into real object masks over a moving background.

The shapes, motion, occlusion and deformation come from real mask sequences (by default the 20
DAVIS 2017 sequences bundled in ``swiftcuda/assets/davis17-masks``); the appearance is generated:

* the background is a large texture that drifts, wobbles, turns and zooms on a path of its own;
* each object gets a texture of another family (noise, stripes, plaid, cells, dots) and another
  hue, spread around the colour wheel away from the background's, that travels with the object's
  centroid and is shaded darker towards its edge;
* the light flickers slightly and every frame gets a little sensor noise.

Everything is drawn from a generator seeded by ``(seed, sequence name)``, so a sequence looks the
same whichever other sequences are generated with it. :func:`render_video` works in memory (for
training); :func:`make_testset` writes a DAVIS-layout data set::

    OUT/JPEGImages/480p/<sequence>/00000.jpg ...
    OUT/Annotations/480p/<sequence>/00000.png ...
    OUT/ImageSets/2017/<set>.txt, OUT/ImageSets/2016/<set>.txt
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from swiftcuda.data.davis import write_sequence_list
from swiftcuda.data.textures import FAMILIES, make_texture
from swiftcuda.errors import InputError
from swiftcuda.io.frames import natural_key
from swiftcuda.io.masks import read_mask, write_mask
from swiftcuda.io.output import staged_directory

logger = logging.getLogger(__name__)

RESOLUTION = "480p"
JPEG_QUALITY = 95
_TEXTURE_MARGIN = 1.3  # textures are this much larger than the frame, so motion rarely reaches their edges


def bundled_masks_root() -> Path:
    """The folder of mask sequences shipped with the package (20 DAVIS 2017 sequences)."""
    return Path(str(resources.files("swiftcuda") / "assets" / "davis17-masks"))


def list_mask_sequences(masks_root: str | os.PathLike | None = None) -> list[str]:
    """The sequences of a masks folder (subfolders holding PNG masks), in natural name order."""
    root = Path(masks_root) if masks_root is not None else bundled_masks_root()
    if not root.is_dir():
        raise InputError(f"masks folder not found: {root}")
    names = [p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.png"))]
    if not names:
        raise InputError(f"no mask sequences in {root}: expected one folder of PNG masks per sequence")
    return sorted(names, key=natural_key)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) labels at (height, width), by nearest neighbour (labels are never blended)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def target_size(height: int, width: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) to render (height, width) masks at: ``size`` as (height, width), or the
    shorter side keeping the aspect (None: as they are)."""
    if size is None:
        return height, width
    if isinstance(size, int):
        scale = size / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    return int(size[0]), int(size[1])


def turns_sideways(size: tuple[int, int], height: int, width: int) -> bool:
    """Whether a (height, width) ``size`` is portrait for landscape frames, or the reverse."""
    return (size[0] - size[1]) * (height - width) < 0


def load_mask_sequence(
    folder: str | os.PathLike,
    *,
    max_frames: int | None = None,
    frame_step: int = 1,
    size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """The masks of one sequence as (T, H, W) uint8 labels.

    Args:
        folder: a folder of PNG label masks, one per frame.
        max_frames: keep at most this many frames (after ``frame_step``).
        frame_step: keep every n-th frame (larger motion between the frames kept).
        size: (height, width) to resize to (nearest neighbour), or the shorter side keeping the
            aspect.

    Raises:
        InputError: no masks, or masks of different sizes.
    """
    folder = Path(folder)
    if frame_step < 1 or (max_frames is not None and max_frames < 1):
        raise InputError("frame_step and max_frames must be positive")
    files = sorted(folder.glob("*.png"), key=lambda p: natural_key(p.name))[::frame_step]
    if not files:
        raise InputError(f"no PNG masks in {folder}")
    files = files[:max_frames] if max_frames is not None else files
    masks = [read_mask(p) for p in files]
    if any(m.shape != masks[0].shape for m in masks):
        raise InputError(f"the masks in {folder} differ in size")
    height, width = target_size(*masks[0].shape, size)
    return np.stack([resize_labels(m, height, width) for m in masks])


def _affine_around(centre_src, centre_dst, angle: float, scale: float, shift) -> np.ndarray:
    """2x3 map from an output pixel to its source: rotate by ``angle`` and zoom by ``scale`` about
    the output centre, then move to ``centre_src + shift``."""
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    rotation = np.array([[cos, -sin], [sin, cos]])
    offset = np.asarray(centre_src) + np.asarray(shift) - rotation @ np.asarray(centre_dst)
    return np.hstack([rotation, offset[:, None]]).astype(np.float64)


def _warp(texture: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.warpAffine(
        texture,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )


@dataclass
class _Layer:
    texture: np.ndarray
    hue: float
    family: str


def _object_hues(rng: np.random.Generator, background_hue: float, count: int) -> list[float]:
    """Hues spread evenly around the wheel, away from the background's, in random order."""
    step = 360.0 / (count + 1)
    hues = [(background_hue + step * (k + 1) + rng.uniform(-0.2, 0.2) * step) % 360 for k in range(count)]
    return [hues[i] for i in rng.permutation(count)]


def _shading(mask: np.ndarray, depth: float) -> np.ndarray:
    """(H, W) float32 in [0.8, 1]: darker within ``depth`` pixels of the mask's edge."""
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    return 0.8 + 0.2 * np.minimum(distance / max(depth, 1.0), 1.0)


def render_video(labels: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
    """Frames for a sequence of label masks.

    Args:
        labels: (T, H, W) integer labels (0 background, 1..K objects; 255 is painted as background).
        rng: a generator, or a seed for one.

    Returns:
        (T, H, W, 3) uint8 RGB frames whose object pixels are exactly ``labels``' objects.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[0] == 0:
        raise ValueError(f"labels must be (T, H, W) with T >= 1, got shape {labels.shape}")
    frames_count, height, width = labels.shape
    ids = [int(i) for i in np.unique(labels) if 0 < i < 255]
    diagonal = math.hypot(height, width)
    tex_h, tex_w = int(height * _TEXTURE_MARGIN) + 2, int(width * _TEXTURE_MARGIN) + 2
    scale = diagonal / 18.0
    families = [str(f) for f in rng.permutation(list(FAMILIES))]
    background_hue = float(rng.uniform(0, 360))
    background = _Layer(
        make_texture(rng, tex_h, tex_w, background_hue, families[0], scale * rng.uniform(0.8, 1.6)),
        background_hue,
        families[0],
    )
    layers = {}
    for k, (object_id, hue) in enumerate(zip(ids, _object_hues(rng, background_hue, len(ids)))):
        family = families[1 + k % (len(families) - 1)]
        layers[object_id] = _Layer(
            make_texture(rng, tex_h, tex_w, hue, family, scale * rng.uniform(0.35, 0.8)), hue, family
        )

    # The background's own path: drift, wobble, slow turn and zoom.
    drift = rng.uniform(-1, 1, 2) * diagonal * 0.004
    wobble, wobble_rate, wobble_phase = (
        diagonal * rng.uniform(0.003, 0.012),
        rng.uniform(0.08, 0.3),
        rng.uniform(0, 2 * np.pi, 2),
    )
    turn_rate = math.radians(rng.uniform(-0.4, 0.4))
    zoom, zoom_rate = rng.uniform(0.02, 0.08), rng.uniform(0.03, 0.12)
    light, light_rate, light_phase = rng.uniform(0.0, 0.05), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * np.pi)

    centre_src = ((tex_w - 1) / 2.0, (tex_h - 1) / 2.0)
    centre_dst = ((width - 1) / 2.0, (height - 1) / 2.0)
    anchor: dict[int, np.ndarray] = {}
    frames = np.empty((frames_count, height, width, 3), dtype=np.uint8)
    for t in range(frames_count):
        shift = drift * t + wobble * np.sin(wobble_rate * t + wobble_phase)
        matrix = _affine_around(centre_src, centre_dst, turn_rate * t, 1.0 + zoom * math.sin(zoom_rate * t), shift)
        canvas = _warp(background.texture, matrix, width, height)
        for object_id, layer in layers.items():
            mask = labels[t] == object_id
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            centroid = np.array([xs.mean(), ys.mean()])
            anchor.setdefault(object_id, centroid)
            # The texture travels with the object: a pixel samples it relative to the centroid.
            moved = _affine_around(centre_src, centre_dst, 0.0, 1.0, anchor[object_id] - centroid)
            texture = _warp(layer.texture, moved, width, height)
            texture *= _shading(mask, diagonal * 0.02)[..., None]
            alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.6)[..., None]
            canvas = canvas * (1.0 - alpha) + texture * alpha
        canvas *= 1.0 + light * math.sin(light_rate * t + light_phase)
        canvas += rng.normal(0.0, 2.0, canvas.shape).astype(np.float32)
        frames[t] = np.clip(canvas, 0, 255).astype(np.uint8)
    return frames


def sequence_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one sequence: it depends on the seed and the name only."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


@dataclass(frozen=True)
class Testset:
    """A generated data set: its root and its sequences (ImageSets/<year>/<set>.txt lists them)."""

    root: Path
    sequences: tuple[str, ...]
    set_name: str


def make_testset(
    out: str | os.PathLike,
    masks_root: str | os.PathLike | None = None,
    *,
    sequences: Sequence[str] | None = None,
    seed: int = 0,
    max_frames: int | None = None,
    frame_step: int = 1,
    size: int | tuple[int, int] | None = None,
    set_name: str = "val",
    overwrite: bool = False,
    progress: bool | None = False,
) -> Testset:
    """Write a DAVIS-layout data set of textured videos of real mask sequences.

    Args:
        out: the folder to create (all or nothing; an existing non-empty one needs ``overwrite``).
        masks_root: folder of mask sequences (default: the bundled DAVIS 2017 masks).
        sequences: which sequences (default: all), in this order.
        seed: the appearance seed; the same seed gives the same files.
        max_frames, frame_step, size: see :func:`load_mask_sequence`.
        set_name: the name of the sequence list written to ImageSets/2017 and ImageSets/2016.
        progress: show a progress bar (None: when stderr is a terminal).

    Returns:
        What was written.

    Raises:
        InputError: an unknown sequence, or unusable masks or output folder.
    """
    root = Path(masks_root) if masks_root is not None else bundled_masks_root()
    available = list_mask_sequences(root)
    names = list(sequences) if sequences is not None else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"unknown sequence(s) {', '.join(unknown)} in {root}: choose among {', '.join(available)}")
    if not names:
        raise InputError("no sequences chosen")
    _warn_if_sideways(size, root, names)

    def make_sequence(name: str) -> tuple[np.ndarray, np.ndarray]:
        labels = load_mask_sequence(root / name, max_frames=max_frames, frame_step=frame_step, size=size)
        if not (labels[0] != 0).any():
            logger.warning("sequence %s: the first frame has no object at this size", name)
        return render_video(labels, sequence_rng(seed, name)), labels

    return _write_dataset(
        out,
        names,
        make_sequence,
        lambda staging: _write_notes(staging, root, names, seed),
        set_name=set_name,
        overwrite=overwrite,
        progress=progress,
    )


def _warn_if_sideways(size: int | tuple[int, int] | None, root: Path, names: list[str]) -> None:
    """One warning when a (height, width) ``size`` turns the masks of some sequences on their side
    (read from the first mask's header)."""
    if not isinstance(size, tuple):
        return
    turned = []
    for name in names:
        first = min(((root / name).glob("*.png")), key=lambda p: natural_key(p.name))
        with Image.open(first) as image:
            width, height = image.size
        if turns_sideways(size, height, width):
            turned.append(f"{name} ({height}x{width})")
    if turned:
        logger.warning(
            "size %dx%d (height x width) turns %d of the %d sequences on their side, e.g. %s: sizes are height x width",
            size[0],
            size[1],
            len(turned),
            len(names),
            turned[0],
        )


def _write_dataset(
    out: str | os.PathLike,
    names: list[str],
    make_sequence: Callable[[str], tuple[np.ndarray, np.ndarray]],
    write_notes: Callable[[Path], None],
    *,
    set_name: str,
    overwrite: bool,
    progress: bool | None,
) -> Testset:
    """Write a DAVIS-layout set, all or nothing: ``make_sequence(name)`` gives (frames, labels)."""
    with staged_directory(out, overwrite=overwrite) as staging:
        for name in tqdm(
            names, desc="generating", unit="seq", disable=None if progress is None else not progress, leave=False
        ):
            frames, labels = make_sequence(name)
            _write_sequence(staging, name, frames, labels)
        for year in ("2017", "2016"):
            write_sequence_list(staging, set_name, year, names)
        write_notes(staging)
    return Testset(root=Path(out), sequences=tuple(names), set_name=set_name)


def make_shapes_testset(
    out: str | os.PathLike,
    count: int,
    *,
    seed: int = 0,
    frames: int = 12,
    size: tuple[int, int] = (272, 480),
    max_objects: int = 3,
    set_name: str = "val",
    overwrite: bool = False,
    progress: bool | None = False,
) -> Testset:
    """Write a DAVIS-layout data set of ``count`` videos of random moving shapes (for training).

    The sequences are named ``shapes-0000`` ... and painted like :func:`make_testset`'s; see
    :mod:`swiftcuda.data.shapes` for why they exist.

    Args:
        size: (height, width) of the frames.
        max_objects: the most objects per video (each video has 1 to this many).
    """
    from swiftcuda.data.shapes import random_shape_sequence

    if count < 1 or frames < 2:
        raise InputError("random shapes need at least one sequence of at least two frames")
    height, width = size
    names = [f"shapes-{k:04d}" for k in range(count)]

    def make_sequence(name: str) -> tuple[np.ndarray, np.ndarray]:
        rng = sequence_rng(seed, name)
        labels = random_shape_sequence(rng, frames, height, width, max_objects)
        return render_video(labels, rng), labels

    def write_notes(staging: Path) -> None:
        (staging / "README.md").write_text(
            "# Generated random-shape videos\n\n"
            f"Made by `swiftcuda make-testset --random-shapes {count}` with seed {seed}: random moving, "
            "deforming, occluding blobs painted with generated textures over a moving textured background.\n",
            encoding="utf-8",
        )

    return _write_dataset(
        out, names, make_sequence, write_notes, set_name=set_name, overwrite=overwrite, progress=progress
    )


def _write_sequence(root: Path, name: str, frames: np.ndarray, labels: np.ndarray) -> None:
    image_dir = root / "JPEGImages" / RESOLUTION / name
    mask_dir = root / "Annotations" / RESOLUTION / name
    image_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for t, (frame, mask) in enumerate(zip(frames, labels)):
        path = image_dir / f"{t:05d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise InputError(f"cannot write {path}")
        write_mask(mask_dir / f"{t:05d}.png", mask)


def _write_notes(root: Path, masks_root: Path, names: list[str], seed: int) -> None:
    (root / "README.md").write_text(
        "# Generated test set\n\n"
        f"Made by `swiftcuda make-testset` with seed {seed} from the mask sequences in {masks_root.name}: "
        "generated textures painted into each object's mask over a moving textured background. "
        "The annotations are the source masks (see LICENSE for theirs).\n\n"
        f"Sequences: {', '.join(names)}\n",
        encoding="utf-8",
    )
    if (masks_root / "LICENSE").is_file():
        shutil.copyfile(masks_root / "LICENSE", root / "LICENSE")
