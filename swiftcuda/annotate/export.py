"""Exporting a session: indexed PNGs as ``swiftcuda segment`` writes them, and the overlay video."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swiftcuda.annotate.errors import Conflict, Forbidden, RequestError
from swiftcuda.annotate.session import NONE, STALE, AnnotationSession
from swiftcuda.inference.video import frame_mask_path
from swiftcuda.io.masks import write_mask
from swiftcuda.io.output import staged_directory, staged_file
from swiftcuda.io.overlay import OverlayVideoWriter, draw_overlay

#: The export's name under --out when none is given: masks/ and masks.mp4.
DEFAULT_NAME = "masks"


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: its folder of masks and overlay video, and frames without a fresh mask."""

    masks: Path
    overlay: Path
    frames: int
    without_mask: int
    stale: int


def export_targets(out: Path, name: str, session_folder: Path) -> tuple[Path, Path]:
    """The masks folder and overlay video of an export called ``name`` under ``out``.

    Raises:
        Forbidden: the name leads outside ``out`` or into the session folder.
        RequestError: an empty name.
    """
    name = name.strip().strip("/")
    if not name:
        raise RequestError("give the export a name: the folder under --out that receives the masks")
    root = out.resolve()
    masks = (root / name).resolve()
    session = session_folder.resolve()
    if root not in masks.parents or masks == session or session in masks.parents or masks in session.parents:
        raise Forbidden(
            f"the export {name!r} would be outside {out} or inside the session folder: choose a name such as {DEFAULT_NAME!r}"
        )
    return masks, masks.with_name(masks.name + ".mp4")


def export_session(session: AnnotationSession, masks: Path, overlay: Path, overwrite: bool = False) -> ExportReport:
    """Write every frame's mask (given, else predicted, else background) as ``segment`` writes
    masks, and the frames with their masks drawn over them as a video, all or nothing.

    Raises:
        Conflict: an earlier export is there and ``overwrite`` is False.
    """
    existing = [path for path in (masks, overlay) if path.exists() and not (path.is_dir() and not any(path.iterdir()))]
    if existing and not overwrite:
        raise Conflict(f"an earlier export is at {existing[0]}: replace it, or export under another name")
    with session.exported():
        empty = np.zeros(session.frames.size, np.uint8)
        without_mask = stale = 0
        with contextlib.ExitStack() as stack:
            staging = stack.enter_context(staged_directory(masks, overwrite=True))
            video = stack.enter_context(staged_file(overlay, overwrite=True))
            writer = stack.enter_context(OverlayVideoWriter(video, session.frames.fps))
            for frame in session.frames:
                kind = session.kind(frame.index)
                without_mask += kind == NONE
                stale += kind == STALE
                labels = session.labels(frame.index)
                labels = empty if labels is None else labels
                write_mask(frame_mask_path(staging, frame), labels)
                writer.write(draw_overlay(frame.image, labels))
            writer.close()  # before the staged file moves into place
    return ExportReport(
        masks=masks, overlay=overlay, frames=len(session.frames), without_mask=without_mask, stale=stale
    )
