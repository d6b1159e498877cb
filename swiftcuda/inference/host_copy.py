"""Bringing label maps back to the host without stalling the GPU.

On a GPU, :class:`LabelCopier` copies each frame's labels into pinned host memory asynchronously
and hands them out one frame later: the caller decodes the next frame and queues its step while the
copy and the step run, and only then waits for the previous frame's labels. On the CPU it simply
converts.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

Tag = TypeVar("Tag")


class LabelCopier(Generic[Tag]):
    """A one-frame-deep pipeline of device label maps to host arrays.

    Example::

        copier = LabelCopier(device)
        for frame in frames:
            labels = seg.to_labels(seg.step(frame.image))
            for tag, host_labels in copier.push(frame, labels):
                write(tag, host_labels)
        for tag, host_labels in copier.drain():
            write(tag, host_labels)
    """

    def __init__(self, device: torch.device, depth: int = 1) -> None:
        self.device = device
        self.depth = depth if device.type == "cuda" else 0
        self._pending: deque[tuple[Tag, Tensor, torch.cuda.Event | None]] = deque()

    def push(self, tag: Tag, labels: Tensor) -> list[tuple[Tag, np.ndarray]]:
        """Start copying ``labels`` (H, W, ids up to 255); return the copies that are due."""
        small = labels.to(torch.uint8)
        if self.depth == 0:
            return [(tag, small.cpu().numpy())]
        host = torch.empty(small.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(small, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending.append((tag, host, event))
        ready = []
        while len(self._pending) > self.depth:
            ready.append(self._finish(self._pending.popleft()))
        return ready

    def drain(self) -> list[tuple[Tag, np.ndarray]]:
        """Every copy still in flight, in order."""
        ready = [self._finish(item) for item in self._pending]
        self._pending.clear()
        return ready

    @staticmethod
    def _finish(item: tuple[Tag, Tensor, torch.cuda.Event | None]) -> tuple[Tag, np.ndarray]:
        tag, host, event = item
        if event is not None:
            event.synchronize()
        return tag, host.numpy()
