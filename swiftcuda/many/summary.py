"""What happened to each video of a run, and the run's ``summary.jsonl``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from swiftcuda.io.output import staged_file

SUMMARY_NAME = "summary.jsonl"

#: done: segmented by this run; skipped: done by an earlier run (its record is kept); failed: the
#: video could not be segmented (``error`` says why); not run: the run stopped before it.
STATUSES = ("done", "skipped", "failed", "not run")


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """One video's outcome.

    Attributes:
        video: its output name.
        status: one of :data:`STATUSES`.
        frames: frames segmented.
        objects: objects followed.
        seconds: the worker's wall time on it, decoding and writing the masks included.
        host: the machine of the worker that ran it.
        error: why it failed (one line), else empty.
    """

    video: str
    status: str
    frames: int = 0
    objects: int = 0
    seconds: float = 0.0
    host: str = ""
    error: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan

    def record(self) -> dict:
        """The JSON object of its summary line."""
        fps = self.fps
        return {
            "video": self.video,
            "frames": self.frames,
            "objects": self.objects,
            "fps": None if math.isnan(fps) else round(fps, 2),
            "seconds": round(self.seconds, 3),
            "host": self.host,
            "status": self.status,
            "error": self.error,
        }

    @classmethod
    def from_record(cls, record: dict) -> VideoResult:
        return cls(
            video=str(record["video"]),
            status=str(record["status"]),
            frames=int(record.get("frames", 0)),
            objects=int(record.get("objects", 0)),
            seconds=float(record.get("seconds", 0.0)),
            host=str(record.get("host", "")),
            error=str(record.get("error", "")),
        )


def write_summary(out: str | os.PathLike, results: Iterable[VideoResult]) -> Path:
    """Write ``OUT/summary.jsonl`` (one JSON object a line, in the order given), replacing any
    earlier run's whole, never half-written."""
    path = Path(out) / SUMMARY_NAME
    with staged_file(path, overwrite=True) as staging:
        staging.write_text("".join(json.dumps(r.record()) + "\n" for r in results), encoding="utf-8")
    return path


def read_summary(out: str | os.PathLike) -> list[VideoResult]:
    """The records of ``OUT/summary.jsonl``."""
    text = (Path(out) / SUMMARY_NAME).read_text(encoding="utf-8")
    return [VideoResult.from_record(json.loads(line)) for line in text.splitlines() if line.strip()]
