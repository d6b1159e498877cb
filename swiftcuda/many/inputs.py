"""The videos of a ``segment-many`` run: a DAVIS-layout folder or a manifest (CSV or JSON lines).

::

    ROOT/JPEGImages/480p/<video>/00000.jpg ...   frames
    ROOT/Annotations/480p/<video>/00000.png      the first frame's mask (named after the first frame)

or a manifest, one video a row, paths relative to the manifest's folder::

    frames,mask,name                                        (CSV; the header row is optional)
    clips/walk.mp4,masks/walk.png,walk
    {"frames": "clips/run", "mask": "masks/run.png"}        (JSON lines; "name" optional)

A video's output name defaults to its frames folder's name or its video file's stem.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swiftcuda.errors import InputError
from swiftcuda.io.frames import list_image_files
from swiftcuda.io.masks import read_object_mask

DAVIS_RESOLUTION = "480p"
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json")
VOID_LABEL = 255

#: How a first mask is read: ``labels`` as ``swiftcuda segment --mask`` reads it; ``davis`` as
#: ``swiftcuda eval`` reads a DAVIS 2017 annotation (void, 255, is background); ``davis2016`` every
#: object as one foreground.
MASK_FORMATS = ("labels", "davis", "davis2016")


@dataclass(frozen=True)
class VideoItem:
    """One video to segment.

    Attributes:
        name: its output folder's name (one path component).
        frames: a folder of frames or a video file.
        mask: its first frame's mask.
        mask_format: one of :data:`MASK_FORMATS`.
    """

    name: str
    frames: Path
    mask: Path
    mask_format: str = "labels"


def read_first_mask(path: str | os.PathLike, mask_format: str = "labels") -> np.ndarray:
    """(H, W) uint8 labels of a first frame's mask, read as ``mask_format`` (:data:`MASK_FORMATS`) says.

    Raises:
        InputError: the mask is missing or unreadable.
    """
    labels = read_object_mask(path)
    if mask_format == "davis2016":
        return (labels != 0).astype(np.uint8)
    if mask_format == "davis":
        return np.where(labels == VOID_LABEL, 0, labels).astype(np.uint8)
    return labels


def discover(root: str | os.PathLike) -> list[VideoItem]:
    """The videos of a DAVIS-layout folder or of a manifest file, in a stable order.

    Raises:
        InputError: ROOT is neither, a manifest row is malformed, or two videos share an output name.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() in MANIFEST_SUFFIXES:
        items = read_manifest(root)
    elif (root / "JPEGImages" / DAVIS_RESOLUTION).is_dir():
        items = davis_items(root)
    elif root.exists():
        raise InputError(
            f"{root} is neither a DAVIS-layout folder (JPEGImages/{DAVIS_RESOLUTION}/<video>, "
            f"Annotations/{DAVIS_RESOLUTION}/<video>) nor a manifest ({', '.join(MANIFEST_SUFFIXES)}): give one of them"
        )
    else:
        raise InputError(f"input not found: {root}")
    if not items:
        raise InputError(f"no videos in {root}: add videos (or manifest rows) to segment")
    check_names(items, root)
    return items


def davis_items(root: Path) -> list[VideoItem]:
    """Every frames folder under ``JPEGImages/480p``, with the annotation of its first frame.

    A folder without frames keeps a placeholder mask path; its job then reports the missing frames.
    """
    images, annotations = root / "JPEGImages" / DAVIS_RESOLUTION, root / "Annotations" / DAVIS_RESOLUTION
    items = []
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        files = list_image_files(folder)
        first = files[0].stem if files else "00000"
        items.append(VideoItem(folder.name, folder, annotations / folder.name / f"{first}.png", "davis"))
    return items


def read_manifest(path: Path) -> list[VideoItem]:
    """The rows of a CSV or JSON-lines manifest (paths relative to its folder).

    Raises:
        InputError: a row without frames or mask, or a line that is not a JSON object.
    """
    rows: list[tuple[int, dict]] = []
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        for number, row in enumerate(csv.reader(text.splitlines()), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells) or (number == 1 and [c.lower() for c in cells[:2]] == ["frames", "mask"]):
                continue
            rows.append((number, dict(zip(("frames", "mask", "name"), cells))))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path} line {number} is not JSON ({error}): write one object a line") from None
            if not isinstance(row, dict):
                raise InputError(f'{path} line {number} is not a JSON object: write {{"frames": ..., "mask": ...}}')
            rows.append((number, row))
    base = path.parent
    items = []
    for number, row in rows:
        frames, mask = row.get("frames"), row.get("mask")
        if not frames or not mask:
            raise InputError(f"{path} line {number} lacks frames or mask: give both (frames,mask[,name])")
        frames_path = base / str(frames)
        name = str(row.get("name") or "") or (frames_path.stem if frames_path.is_file() else frames_path.name)
        items.append(VideoItem(name, frames_path, base / str(mask)))
    return items


def check_names(items: list[VideoItem], origin: Path) -> None:
    """Refuse output names that are not one plain folder name, or that two videos share.

    Raises:
        InputError: naming the first bad or shared name and the fix.
    """
    for item in items:
        if (
            not item.name
            or item.name in (".", "..")
            or item.name.startswith(".")
            or "/" in item.name
            or "\\" in item.name
        ):
            raise InputError(
                f"video output name {item.name!r} in {origin} is not a plain folder name: give a name column"
            )
        if item.name == "summary.jsonl":
            raise InputError(f"a video in {origin} is named summary.jsonl, the run's summary: give it another name")
    shared = [name for name, count in Counter(item.name for item in items).items() if count > 1]
    if shared:
        raise InputError(f"two videos in {origin} would both write {shared[0]}/: give them distinct names")


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or inside it (after resolving links)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_outputs_spare_inputs(items: list[VideoItem], out: Path) -> None:
    """Refuse an output folder whose video folders would replace an input, even with --overwrite.

    Raises:
        InputError: a video's frames or mask lie inside its output folder, or the frames hold it.
    """
    for item in items:
        target = out / item.name
        for given in (item.frames, item.mask):
            if is_within(given, target) or is_within(target, given):
                raise InputError(
                    f"--out {out} would write {target} over the input {given}: choose another output folder"
                )
