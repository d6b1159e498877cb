"""The Ray actor of ``segment-many``: loads the model once, then segments one video per call,
several calls at a time stepped together when it holds several streams (:mod:`swiftcuda.many.lockstep`).

Importing this module imports Ray; :func:`swiftcuda.many.driver.require_ray` says how to install
it when it is missing.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import ray
import torch

from swiftcuda.errors import SwiftcudaError
from swiftcuda.inference.stream import VideoStream
from swiftcuda.many.inputs import VideoItem
from swiftcuda.many.job import segment_item
from swiftcuda.many.lockstep import LockstepBatch
from swiftcuda.many.summary import VideoResult

if TYPE_CHECKING:
    from swiftcuda.options import EngineOptions


@ray.remote
class SegmentWorker:
    """One model, and one :class:`~swiftcuda.inference.Segmenter` reused for every video it gets,
    or with ``videos`` > 1 the streams of one :class:`~swiftcuda.inference.batched.BatchedSegmenter`.

    Start it with ``max_concurrency=videos``: Ray then runs up to ``videos`` :meth:`segment` calls
    at once, in threads, each in its own stream, stepped together.

    Args:
        options: the engine's options (weights named), from which the worker builds the same
            segmenter as ``swiftcuda segment`` (:mod:`swiftcuda.engine`).
        threads: CPU threads for PyTorch (Ray's share of CPUs for this actor).
        videos: videos stepped together (1: one :class:`Segmenter`, CUDA graphs included on a GPU).
        frame_delay: seconds to sleep after each frame; 0 except in tests that need a worker busy
            long enough to be killed mid-video.
    """

    def __init__(self, options: EngineOptions, threads: int, videos: int = 1, frame_delay: float = 0.0) -> None:
        # The engine modules are imported here, in the worker process, not pickled from the driver.
        from swiftcuda.engine import build_batched_segmenter, build_segmenter, load_engine_model

        torch.set_num_threads(max(1, threads))
        self.frame_delay = frame_delay
        self.startup_error: SwiftcudaError | None = None
        self.segmenter: VideoStream | None = None
        self.lockstep: LockstepBatch | None = None
        try:
            model = load_engine_model(options)
            if videos == 1:
                self.segmenter = build_segmenter(options, model)
            else:
                self.lockstep = LockstepBatch(build_batched_segmenter(options, videos, model))
        except SwiftcudaError as error:
            # Kept, not raised: Ray would report a constructor's error as a dead actor with a
            # traceback, and the driver turns this into the command's one-line error instead.
            self.startup_error = error

    def identity(self) -> tuple[str, int, SwiftcudaError | None]:
        """(host name, process id, the user error that stopped the model loading, or None)."""
        return socket.gethostname(), os.getpid(), self.startup_error

    def segment(self, item: VideoItem, out: str) -> VideoResult:
        """Segment ``item`` into ``out/<item.name>/`` (see :func:`swiftcuda.many.job.segment_item`)."""
        delay = self.frame_delay
        on_frame = (lambda _: time.sleep(delay)) if delay else None
        if self.lockstep is None:
            return segment_item(self.segmenter, item, Path(out), on_frame=on_frame)
        with self.lockstep.stream() as stream:
            return segment_item(stream, item, Path(out), on_frame=on_frame)
