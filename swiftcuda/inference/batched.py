"""Several independent videos segmented together, for throughput.

The trunk, the most expensive part of a step, encodes the current frame of every video in one
batch; each video then reads and updates its own memory as a :class:`Segmenter` does alone. Videos
may start at different times, have different objects and different sizes (videos of one size share
a trunk pass).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from swiftcuda.inference.segmenter import Segmenter
from swiftcuda.model import SwiftNet
from swiftcuda.optimize import is_prepared, prepare


class BatchedSegmenter:
    """``num_videos`` independent streams stepped together.

    Example::

        batch = BatchedSegmenter(model, num_videos=4)
        probs = batch.step(first_frames, masks=first_masks)   # list of (K_b + 1, H_b, W_b)
        probs = batch.step(next_frames)

    Args:
        model: a SwiftNet in eval mode, shared by the streams; prepared as :class:`Segmenter`
            prepares it (once, with the default options, unless it is prepared already).
        num_videos: how many streams.
        **options: as for :class:`Segmenter` (memory, mem_every, beta, capacity, pam, backend,
            device_decisions, internal_size); CUDA graphs are per stream and not used here. Videos of
            one internal size share a trunk pass.
    """

    def __init__(self, model: SwiftNet, num_videos: int, **options) -> None:
        if num_videos < 1:
            raise ValueError(f"num_videos must be at least 1, got {num_videos}")
        if options.get("cuda_graphs"):
            raise ValueError("a batched session does not capture CUDA graphs: use one Segmenter per stream for that")
        shared = model.eval() if is_prepared(model) else prepare(model.eval())
        self.streams = [Segmenter(shared, **options) for _ in range(num_videos)]

    def __len__(self) -> int:
        return len(self.streams)

    def reset(self, video: int) -> None:
        """Start a new video in stream ``video`` (its next step needs a mask)."""
        self.streams[video].reset()

    @torch.inference_mode()
    def step(
        self,
        images: Sequence[np.ndarray | Tensor | None],
        masks: Sequence[np.ndarray | Tensor | None] | None = None,
    ) -> list[Tensor | None]:
        """Segment the next frame of every stream.

        Args:
            images: one frame per stream (as :meth:`Segmenter.step` takes); None skips a stream.
            masks: optional per-stream masks (None where there is none).

        Returns:
            Per stream, (K+1, H, W) float32 probabilities, or None for a skipped stream.
        """
        if len(images) != len(self.streams) or (masks is not None and len(masks) != len(self.streams)):
            raise ValueError(f"give one image (and mask) per stream: {len(self.streams)} streams")
        masks = masks if masks is not None else [None] * len(self.streams)
        inputs: dict[int, tuple[Tensor, Tensor | None, Tensor | None]] = {}
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, (stream, image, mask) in enumerate(zip(self.streams, images, masks)):
            if image is not None:
                inputs[index] = stream._scaled_inputs(stream._prepare(image, mask), mask)
                groups[tuple(inputs[index][0].shape[-2:])].append(index)  # by internal size
        results: list[Tensor | None] = [None] * len(self.streams)
        for members in groups.values():
            query = self.streams[members[0]].encode(torch.cat([inputs[i][0] for i in members]))
            for position, index in enumerate(members):
                stream, (frame, labels, given) = self.streams[index], inputs[index]
                results[index] = stream._output(stream._finish(frame, query.frame(position), labels), given)
        return results

    def to_labels(self, probs: Sequence[Tensor | None]) -> list[Tensor | None]:
        """Per stream, (H, W) object ids from its probabilities."""
        return [None if p is None else stream.to_labels(p) for stream, p in zip(self.streams, probs)]
