"""Several videos stepped together by concurrent threads, one video each, on one
:class:`~swiftcuda.inference.batched.BatchedSegmenter`.

Each thread runs the ordinary per-video loop (:func:`swiftcuda.many.job.segment_item`, the loop of
``swiftcuda segment``) with a :class:`LockstepStream` in place of a :class:`Segmenter`: its
``step`` hands the frame in and waits until every video in progress has handed in its next frame,
then one trunk pass encodes them all (videos of one internal size share it) and each thread gets
its own probabilities back. Decoding the frames and writing the masks stay in the threads, so they
overlap with each other. A video that ends or fails leaves the batch at once (its stream is then
free for the next video, which starts with a reset stream while the others go on); its failure is
its own, the others do not see it.

A ``segment-many`` worker with ``--videos-per-worker N`` is a Ray actor running up to N calls at a
time in threads (``max_concurrency``), each call one video in one stream of this batch.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from swiftcuda.inference.batched import BatchedSegmenter

log = logging.getLogger(__name__)


class LockstepBatch:
    """A :class:`BatchedSegmenter` shared by threads that each segment one video in one stream.

    Example::

        lockstep = LockstepBatch(BatchedSegmenter(model, num_videos=2, memory="official"))
        # in each of up to two threads:
        with lockstep.stream() as seg:                       # seg acts as a Segmenter
            probs = seg.step(first_frame, mask=first_mask)  # (K+1, H, W), with the other thread's frame
            probs = seg.step(next_frame)

    Args:
        batch: its streams are handed out one per :meth:`stream` block.
    """

    def __init__(self, batch: BatchedSegmenter) -> None:
        self.batch = batch
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(len(batch)):
            self._free.put(slot)
        self._changed = threading.Condition()
        self._active: set[int] = set()  # streams inside a stream() block
        self._requests: dict[int, tuple[np.ndarray | Tensor, np.ndarray | Tensor | None]] = {}
        self._results: dict[int, Tensor | BaseException] = {}
        self._stepping = False

    def __len__(self) -> int:
        return len(self.batch)

    @contextlib.contextmanager
    def stream(self) -> Iterator[LockstepStream]:
        """A free stream for one video, for the duration of the block.

        Raises:
            RuntimeError: every stream is taken (more concurrent videos than ``len(self)``).
        """
        try:
            slot = self._free.get_nowait()
        except queue.Empty:
            raise RuntimeError(f"all {len(self)} streams are taken: run at most {len(self)} videos at a time") from None
        with self._changed:
            self._active.add(slot)
        try:
            yield LockstepStream(self, slot)
        finally:
            with self._changed:
                self._active.discard(slot)
                self._requests.pop(slot, None)
                self._results.pop(slot, None)
                self._changed.notify_all()  # the others may now be all that a step waits for
            self._free.put(slot)

    def step(self, slot: int, image: np.ndarray | Tensor, mask: np.ndarray | Tensor | None) -> Tensor:
        """Stream ``slot``'s next frame, stepped with the next frame of every other video in progress.

        Returns:
            (K+1, H, W) float32 probabilities, as :meth:`Segmenter.step` returns them.

        Raises:
            Whatever the batched step raised (it is raised in every thread whose frame was in it).
        """
        with self._changed:
            self._requests[slot] = (image, mask)
            self._changed.notify_all()
            while slot not in self._results:
                if not self._stepping and self._active.issubset(self._requests):
                    self._lead()
                else:
                    self._changed.wait()
            result = self._results.pop(slot)
        if isinstance(result, BaseException):
            raise result
        return result

    def _lead(self) -> None:
        """Step every handed-in frame (called holding the lock, which is released meanwhile)."""
        taken, self._requests = self._requests, {}
        self._stepping = True
        self._changed.release()
        try:
            images: list = [None] * len(self)
            masks: list = [None] * len(self)
            for slot, (image, mask) in taken.items():
                images[slot], masks[slot] = image, mask
            try:
                probs = self.batch.step(images, masks)
                outcome: dict[int, Tensor | BaseException] = {slot: probs[slot] for slot in taken}
            except BaseException as error:  # an engine error: every video of this step shares it
                log.warning("a batched step of %d video(s) failed: %s", len(taken), error)
                outcome = {slot: error for slot in taken}
        finally:
            self._changed.acquire()
            self._stepping = False
        self._results.update(outcome)
        self._changed.notify_all()


class LockstepStream:
    """One stream of a :class:`LockstepBatch`, with the part of :class:`Segmenter`'s interface that
    the per-video loop uses (``reset``, ``step``, ``to_labels``, ``object_ids``, ``device``)."""

    def __init__(self, lockstep: LockstepBatch, slot: int) -> None:
        self._lockstep, self._slot = lockstep, slot
        self._segmenter = lockstep.batch.streams[slot]

    @property
    def device(self) -> torch.device:
        return self._segmenter.device

    @property
    def object_ids(self) -> tuple[int, ...]:
        return self._segmenter.object_ids

    def reset(self) -> None:
        """Start a new video in this stream (its next step needs a mask)."""
        self._lockstep.batch.reset(self._slot)

    def step(self, image: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None) -> Tensor:
        """(K+1, H, W) probabilities of the next frame (see :meth:`Segmenter.step`)."""
        return self._lockstep.step(self._slot, image, mask)

    def to_labels(self, probs: Tensor) -> Tensor:
        """(K+1, H, W) probabilities -> (H, W) object ids."""
        return self._segmenter.to_labels(probs)
