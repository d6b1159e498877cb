"""An annotation session: its objects, the masks drawn and the masks propagated, saved as work proceeds.

Masks of a frame come in two kinds. A **given** mask is one the user drew (the first frame's, or a
correction): the engine takes it as it is, for every object (:meth:`Segmenter.step` with
``complete=True``), and keeps it in memory. A **predicted** mask is the engine's; it is *stale* when
a given mask at an earlier frame changed after it was computed.

The engine's results form one chain: it starts at the first frame with a given mask and runs
forward, frame after frame; ``chain.end`` is the last frame computed. An edit at frame k leaves
frames before k as they are and makes the chain *dirty* from k: the next run resumes at k (from the
engine's state before k) or where the chain ended, whichever comes first.

On disk, under the session folder (everything written to a temporary name and renamed, so a killed
server leaves every file whole)::

    session.json            the objects, which frames have given masks, the chain
    given/000012.png        given masks, indexed PNGs (the format ``segment --mask`` reads)
    predicted/000013.zz     predicted masks: the (H, W) uint8 labels, zlib-compressed
    pictures/               a video's frames as JPEG pictures for the page

Predicted masks are kept compressed in memory as well: that is also what the page receives.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swiftcuda.annotate.errors import Conflict, NotFound, RequestError
from swiftcuda.annotate.frames import VideoFrames
from swiftcuda.errors import InputError
from swiftcuda.io.masks import read_mask, write_mask

logger = logging.getLogger(__name__)

FORMAT = 1
SESSION_FILE = "session.json"
#: Object ids are labels of indexed PNGs.
MAX_OBJECT_ID = 255
#: zlib level of predicted masks: label maps compress well even at the fastest level.
COMPRESSION_LEVEL = 1
#: Seconds between saves of session.json during a run (masks are saved as they come).
RUN_SAVE_INTERVAL = 1.0

GIVEN, PREDICTED, STALE, NONE = "given", "predicted", "stale", "none"
_KINDS = (GIVEN, PREDICTED, STALE, NONE)


@dataclass
class Chain:
    """The engine's run: from ``start`` (a frame with a given mask) to ``end`` (start - 1: none yet)."""

    start: int
    end: int


@dataclass(frozen=True)
class Plan:
    """What a propagation does.

    Attributes:
        start: the first frame whose masks it writes.
        chain_start: where the engine's chain begins (a frame with a given mask).
        fresh: the chain begins anew (the engine is reset at ``chain_start``); otherwise it resumes
            from its state before ``start``.
    """

    start: int
    chain_start: int
    fresh: bool


def _atomic_write(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def compress_labels(labels: np.ndarray) -> bytes:
    """(H, W) uint8 labels as zlib bytes (the page's ``Content-Encoding: deflate``)."""
    return zlib.compress(np.ascontiguousarray(labels, dtype=np.uint8).tobytes(), COMPRESSION_LEVEL)


class AnnotationSession:
    """The state of one video's annotation, safe to use from the server's and the engine's threads.

    Use :meth:`open`, which reopens the session saved in the folder, if any.
    """

    def __init__(self, frames: VideoFrames, folder: Path) -> None:
        self.frames = frames
        self.folder = folder
        self._lock = threading.RLock()
        self.objects: dict[int, str] = {}
        self._given: dict[int, np.ndarray] = {}
        self._given_compressed: dict[int, bytes] = {}
        self._predicted: dict[int, bytes] = {}
        self.chain: Chain | None = None
        self.dirty_from: int | None = None
        self.running = False
        self.exporting = False
        self.version = 0  # changes whenever anything the page shows changes
        self._last_save = 0.0

    # -- opening and saving --------------------------------------------------------------------

    @classmethod
    def open(cls, folder: str | os.PathLike, frames: VideoFrames) -> AnnotationSession:
        """The session saved in ``folder``, or a new one.

        Raises:
            InputError: the folder holds the session of another video, or an unreadable one.
        """
        folder = Path(folder)
        session = cls(frames, folder)
        for sub in ("given", "predicted"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        saved = folder / SESSION_FILE
        if saved.is_file():
            session._load(saved)
        else:
            session.save()
        return session

    @staticmethod
    def check_owner(folder: str | os.PathLike, source: str | os.PathLike) -> None:
        """Refuse a folder holding the session of another input (before anything is written there).

        Raises:
            InputError: the folder's session is of another input.
        """
        saved = Path(folder) / SESSION_FILE
        try:
            owner = json.loads(saved.read_text())["input"]
        except (OSError, ValueError, KeyError, TypeError):
            return  # no session yet, or an unreadable one (open() says so)
        if owner != str(Path(source).resolve()):
            raise InputError(f"{Path(folder)} holds the session of another video ({owner}): choose another --out")

    def _identity(self) -> dict:
        return {"input": str(self.frames.path.resolve()), "frames": len(self.frames), "size": list(self.frames.size)}

    def _load(self, saved: Path) -> None:
        try:
            data = json.loads(saved.read_text())
            identity = {key: data[key] for key in ("input", "frames", "size")}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{saved} is not a readable annotation session ({error}): choose another --out") from None
        if data.get("format") != FORMAT:
            raise InputError(
                f"{saved} has session format {data.get('format')}, this swiftcuda reads {FORMAT}: choose another --out"
            )
        if identity != self._identity():
            raise InputError(
                f"{self.folder} holds the session of another video ({identity['input']}, {identity['frames']} frames of "
                f"{identity['size'][0]}x{identity['size'][1]}): choose another --out"
            )
        self.objects = {int(o["id"]): str(o["name"]) for o in data["objects"]}
        for index in data["given"]:
            labels = read_mask(self._given_path(index))
            if labels.shape != self.frames.size:
                raise InputError(
                    f"{self._given_path(index)} is not {self.frames.size[0]}x{self.frames.size[1]}: the session is damaged"
                )
            self._given[index] = labels
        for path in sorted((self.folder / "predicted").glob("*.zz")):
            index = int(path.stem) if path.stem.isdigit() else -1
            if 0 <= index < len(self.frames):
                self._predicted[index] = path.read_bytes()
        chain = data.get("chain")
        self.chain = Chain(int(chain["start"]), int(chain["end"])) if chain else None
        self.dirty_from = data.get("dirty_from")
        logger.info(
            "reopened %s: %d objects, %d given, %d predicted",
            self.folder,
            len(self.objects),
            len(self._given),
            len(self._predicted),
        )

    def save(self) -> None:
        """Write session.json (atomically); the masks are written as they change."""
        with self._lock:
            data = {
                "format": FORMAT,
                **self._identity(),
                "objects": [{"id": i, "name": name} for i, name in self.objects.items()],
                "given": sorted(self._given),
                "chain": None if self.chain is None else {"start": self.chain.start, "end": self.chain.end},
                "dirty_from": self.dirty_from,
                "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            _atomic_write(self.folder / SESSION_FILE, json.dumps(data, indent=1).encode())
            self._last_save = _now()

    def _given_path(self, index: int) -> Path:
        return self.folder / "given" / f"{index:06d}.png"

    def _predicted_path(self, index: int) -> Path:
        return self.folder / "predicted" / f"{index:06d}.zz"

    def _changed(self) -> None:
        self.version += 1

    # -- what the page shows -------------------------------------------------------------------

    def kind(self, index: int) -> str:
        """given, predicted, stale or none."""
        with self._lock:
            if index in self._given:
                return GIVEN
            if index not in self._predicted:
                return NONE
            # A frame's prediction depends on the given masks before it only: an edit at frame k
            # leaves frame k's own prediction (shown again if k's given mask is removed) valid.
            chain, dirty = self.chain, self.dirty_from
            fresh = chain is not None and chain.start <= index <= chain.end and (dirty is None or index <= dirty)
            return PREDICTED if fresh else STALE

    def mask_payload(self, index: int) -> tuple[str, bytes | None]:
        """Frame ``index``'s kind and its labels as zlib bytes (None when it has no mask)."""
        self.frames.check_index(index)
        with self._lock:
            kind = self.kind(index)
            if kind == GIVEN:
                if index not in self._given_compressed:
                    self._given_compressed[index] = compress_labels(self._given[index])
                return kind, self._given_compressed[index]
            return kind, self._predicted.get(index)

    def labels(self, index: int) -> np.ndarray | None:
        """Frame ``index``'s (H, W) uint8 labels (given, else predicted), or None."""
        kind, payload = self.mask_payload(index)
        if payload is None:
            return None
        return np.frombuffer(zlib.decompress(payload), dtype=np.uint8).reshape(self.frames.size)

    def given_mask(self, index: int) -> np.ndarray | None:
        with self._lock:
            return self._given.get(index)

    def frame_runs(self) -> list[list]:
        """Every frame's kind (as :meth:`kind` says), run-length encoded: [[kind, first, last], ...]
        in frame order. Computed with array operations: the page asks several times a second."""
        with self._lock:
            count = len(self.frames)
            codes = np.full(count, 3, np.int8)  # indices into _KINDS
            predicted = np.fromiter(self._predicted, dtype=np.int64, count=len(self._predicted))
            codes[predicted] = 2
            if self.chain is not None:
                stop = self.chain.end + 1 if self.dirty_from is None else min(self.chain.end, self.dirty_from) + 1
                fresh = predicted[(predicted >= self.chain.start) & (predicted < stop)]
                codes[fresh] = 1
            codes[np.fromiter(self._given, dtype=np.int64, count=len(self._given))] = 0
        starts = np.flatnonzero(np.diff(codes, prepend=-1))
        stops = np.append(starts[1:], count) - 1
        return [[_KINDS[codes[a]], int(a), int(b)] for a, b in zip(starts, stops, strict=True)]

    def describe(self) -> dict:
        """The session as the page's status shows it."""
        with self._lock:
            return {
                "version": self.version,
                "objects": [{"id": i, "name": name} for i, name in self.objects.items()],
                "runs": self.frame_runs(),
                "chain": None if self.chain is None else {"start": self.chain.start, "end": self.chain.end},
                "dirty_from": self.dirty_from,
            }

    # -- edits ---------------------------------------------------------------------------------

    def _check_editable(self) -> None:
        if self.running:
            raise Conflict("the engine is propagating: stop it before editing")
        if self.exporting:
            raise Conflict("the session is being exported: wait until the export is done")

    @contextlib.contextmanager
    def exported(self) -> Iterator[None]:
        """While the block runs, the masks stay as they are (no edits, no runs).

        Raises:
            Conflict: a run or another export is in progress.
        """
        with self._lock:
            self._check_editable()
            self.exporting = True
        try:
            yield
        finally:
            with self._lock:
                self.exporting = False

    def add_object(self, name: str | None = None) -> int:
        """A new object (the smallest free id); returns its id."""
        with self._lock:
            self._check_editable()
            free = [i for i in range(1, MAX_OBJECT_ID + 1) if i not in self.objects]
            if not free:
                raise Conflict(f"a session holds at most {MAX_OBJECT_ID} objects (the labels of an indexed PNG)")
            object_id = free[0]
            self.objects[object_id] = _object_name(name, object_id)
            self._changed()
            self.save()
            return object_id

    def rename_object(self, object_id: int, name: str) -> None:
        with self._lock:
            self._check_object(object_id)
            self.objects[object_id] = _object_name(name, object_id)
            self._changed()
            self.save()

    def remove_object(self, object_id: int) -> None:
        """Forget an object: its pixels become background in every mask; the chain is dirty from
        the first frame whose given mask held it."""
        with self._lock:
            self._check_editable()
            self._check_object(object_id)
            del self.objects[object_id]
            for index in sorted(self._given):
                labels = self._given[index]
                if (labels == object_id).any():
                    self._store_given(index, np.where(labels == object_id, 0, labels).astype(np.uint8))
                    self._mark_dirty(index)
            for index, payload in list(self._predicted.items()):
                labels = np.frombuffer(zlib.decompress(payload), dtype=np.uint8)
                if (labels == object_id).any():
                    self._store_predicted(index, np.where(labels == object_id, 0, labels).astype(np.uint8))
            self._changed()
            self.save()

    def _check_object(self, object_id: int) -> None:
        if object_id not in self.objects:
            raise NotFound(f"object {object_id} does not exist (objects: {sorted(self.objects) or 'none'})")

    def set_given(self, index: int, labels: np.ndarray) -> None:
        """Make ``labels`` (H, W) uint8 frame ``index``'s given mask.

        Raises:
            RequestError: a mask of another size, or with a label that is not an object.
            Conflict: a run is in progress.
        """
        self.frames.check_index(index)
        if labels.shape != tuple(self.frames.size):
            height, width = self.frames.size
            raise RequestError(
                f"the mask is {labels.shape} but frames are {height}x{width}: send {height * width} bytes"
            )
        with self._lock:
            self._check_editable()
            unknown = sorted(set(np.unique(labels).tolist()) - {0} - set(self.objects))
            if unknown:
                raise RequestError(f"the mask holds label {unknown[0]}, which is no object: add the object first")
            self._store_given(index, labels.astype(np.uint8))
            self._mark_dirty(index)
            self._changed()
            self.save()

    def clear_given(self, index: int) -> None:
        """Frame ``index`` has no given mask any more (its predicted mask, if any, shows again)."""
        self.frames.check_index(index)
        with self._lock:
            self._check_editable()
            if index not in self._given:
                raise NotFound(f"frame {index} has no given mask")
            del self._given[index]
            self._given_compressed.pop(index, None)
            self._given_path(index).unlink(missing_ok=True)
            self._mark_dirty(index)
            self._changed()
            self.save()

    def _store_given(self, index: int, labels: np.ndarray) -> None:
        path = self._given_path(index)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.png", dir=path.parent)
        os.close(handle)
        try:
            write_mask(temporary, labels)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._given[index] = labels
        self._given_compressed.pop(index, None)

    def _store_predicted(self, index: int, labels: np.ndarray) -> None:
        payload = compress_labels(labels)
        _atomic_write(self._predicted_path(index), payload)
        self._predicted[index] = payload

    def _mark_dirty(self, index: int) -> None:
        if self.chain is not None:
            self.dirty_from = index if self.dirty_from is None else min(self.dirty_from, index)

    # -- runs of the engine --------------------------------------------------------------------

    def plan(self) -> Plan:
        """Where the next propagation starts.

        Raises:
            RequestError: no frame has a given mask with an object.
            Conflict: every frame is up to date.
        """
        with self._lock:
            keys = [index for index in sorted(self._given) if self._given[index].any()]
            if not keys:
                raise RequestError("no frame has a mask yet: draw the objects on a frame first")
            first, chain, dirty = keys[0], self.chain, self.dirty_from
            if chain is None or chain.start != first or (dirty is not None and dirty <= chain.start):
                return Plan(start=first, chain_start=first, fresh=True)
            start = chain.end + 1 if dirty is None else min(dirty, chain.end + 1)
            if start == chain.start:  # nothing of the chain is left: it starts anew
                return Plan(start=first, chain_start=first, fresh=True)
            if start >= len(self.frames):
                raise Conflict("every frame is up to date: edit a frame to propagate again from it")
            return Plan(start=start, chain_start=chain.start, fresh=False)

    def begin_run(self, plan: Plan) -> None:
        """A run of ``plan`` starts: frames from ``plan.start`` on are about to be rewritten."""
        with self._lock:
            if self.running:
                raise Conflict("the engine is already propagating")
            if self.exporting:
                raise Conflict("the session is being exported: propagate when the export is done")
            if plan.fresh:
                for index in [i for i in self._predicted if i < plan.chain_start]:
                    del self._predicted[index]  # made by a chain that no longer exists
                    self._predicted_path(index).unlink(missing_ok=True)
                self.chain = Chain(plan.chain_start, plan.chain_start - 1)
            else:
                self.chain.end = plan.start - 1
            self.dirty_from = None
            self.running = True
            self._changed()
            self.save()

    def publish(self, index: int, labels: np.ndarray) -> None:
        """The engine's masks of frame ``index`` (the chain's next frame)."""
        with self._lock:
            if index not in self._given:
                self._store_predicted(index, labels)
            elif index in self._predicted:  # at a given frame the engine returns the given mask: an
                del self._predicted[index]  # earlier prediction there is out of date
                self._predicted_path(index).unlink(missing_ok=True)
            self.chain.end = index
            self._changed()
            if _now() - self._last_save >= RUN_SAVE_INTERVAL:
                self.save()

    def end_run(self) -> None:
        with self._lock:
            self.running = False
            self._changed()
            self.save()


def _object_name(name: str | None, object_id: int) -> str:
    name = (name or "").strip()
    if len(name) > 100:
        raise RequestError("an object name has at most 100 characters")
    return name or f"object {object_id}"


def _now() -> float:
    return time.monotonic()
