"""One video of a run into ``OUT/<video>/``, all or nothing, then its done marker.

The masks go to a hidden staging folder that is renamed to ``OUT/<video>`` only when the last one
is written; the done marker (``OUT/.swiftcuda-many/<video>.json``, the video's summary record) is
written after the rename. So a worker killed at any moment leaves either nothing, or a staging
folder that the next attempt removes, or a complete folder without a marker that the next attempt
replaces; a video is skipped only when its marker says it is done.
"""

from __future__ import annotations

import functools
import json
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from swiftcuda.errors import InputError, SwiftcudaError
from swiftcuda.inference.segmenter import Segmenter
from swiftcuda.inference.video import frame_mask_path, open_video, segment_frames
from swiftcuda.io.frames import Frame
from swiftcuda.io.masks import write_mask
from swiftcuda.io.output import check_writable_target, staged_directory, staged_file
from swiftcuda.many.inputs import VideoItem, read_first_mask
from swiftcuda.many.lockstep import LockstepStream
from swiftcuda.many.summary import VideoResult

#: The run's bookkeeping folder inside OUT (hidden, so OUT lists the video folders and the summary).
STATE_FOLDER = ".swiftcuda-many"


def prepare_output(out: Path, overwrite: bool) -> bool:
    """Make ``out`` ready for a run; returns whether it holds an earlier run to resume.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder that no run made, without --overwrite.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file: choose a folder path")
    resuming = (out / STATE_FOLDER).is_dir()
    if not resuming:
        check_writable_target(out, overwrite, "output folder")
    (out / STATE_FOLDER).mkdir(parents=True, exist_ok=True)
    return resuming


def marker_path(out: Path, video: str) -> Path:
    return out / STATE_FOLDER / f"{video}.json"


def finished_result(out: Path, video: str, status: str = "skipped") -> VideoResult | None:
    """The record of a finished video with ``status`` (by default ``skipped``: an earlier run did
    it), or None when it must run."""
    marker = marker_path(out, video)
    if not marker.is_file() or not (out / video).is_dir():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # an unreadable marker: segment the video again
    return VideoResult.from_record({**record, "status": status})


def write_marker(out: Path, result: VideoResult) -> None:
    marker = marker_path(out, result.video)
    with staged_file(marker, overwrite=True) as staging:
        staging.write_text(json.dumps(result.record()), encoding="utf-8")


def clear_marker(out: Path, video: str) -> None:
    marker_path(out, video).unlink(missing_ok=True)


def remove_leftovers(out: Path, video: str) -> None:
    """Remove the staging folders an interrupted attempt at ``video`` left in ``out``."""
    if not out.is_dir():
        return
    prefix = f".{video}."
    for path in out.iterdir():
        if path.name.startswith(prefix) and path.name.endswith(".partial") and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def segment_item(
    segmenter: Segmenter | LockstepStream,
    item: VideoItem,
    out: Path,
    on_frame: Callable[[Frame], None] | None = None,
) -> VideoResult:
    """Segment one video into ``out/<item.name>/`` exactly as ``swiftcuda segment`` would, then
    mark it done.

    Args:
        segmenter: reused across videos (reset for each); or one stream of a worker's batch.
        item: the video.
        out: the run's output folder.
        on_frame: called after each frame's mask is written (progress, or a test's slowdown).

    Returns:
        ``done`` with its counts and time, or ``failed`` with the one-line reason when the video
        cannot be used (corrupt, missing, mask of the wrong size); nothing is left for a failed video.
    """
    host = socket.gethostname()
    started = time.perf_counter()
    remove_leftovers(out, item.name)
    clear_marker(out, item.name)
    try:
        source, labels = open_video(
            item.frames, item.mask, functools.partial(read_first_mask, mask_format=item.mask_format)
        )
        with staged_directory(out / item.name, overwrite=True) as staging:

            def save(frame: Frame, predicted: np.ndarray) -> None:
                write_mask(frame_mask_path(staging, frame), predicted)
                if on_frame is not None:
                    on_frame(frame)

            count = segment_frames(segmenter, source, labels, save, mask_origin=item.mask)
    except SwiftcudaError as error:
        return VideoResult(item.name, "failed", host=host, error=str(error))
    result = VideoResult(
        item.name,
        "done",
        frames=count,
        objects=len(segmenter.object_ids),
        seconds=time.perf_counter() - started,
        host=host,
    )
    write_marker(out, result)
    return result
