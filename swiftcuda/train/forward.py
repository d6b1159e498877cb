"""The training forward pass: predict a clip's frames through the memory, as at inference.

Frame 0 is given; frame t >= 1 reads frame 0 (the long-term memory) and frame t-1 (the previous
frame, encoded from its *predicted* probabilities), exactly as the official evaluation schedule
does for short clips. Gradients flow through the predicted masks into later frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from swiftcuda import ops
from swiftcuda.model import QueryEncoding, SwiftNet

#: Ops backend for training: the reference ops are differentiable; the fused kernels need not be.
TRAIN_BACKEND = "reference"


def predict_clips(model: SwiftNet, frames: Tensor, first_objects: list[Tensor]) -> list[list[Tensor]]:
    """Probabilities of frames 1..T-1 of a batch of clips.

    The trunk encodes all B x T frames in one batch (its batch norms see them all); memory encoding
    and decoding then run clip by clip, since clips hold different numbers of objects.

    Args:
        model: the model (train or eval mode).
        frames: (B, T, 3, H, W) RGB in [0, 1], H and W multiples of 16.
        first_objects: per clip, (K_b, H, W) float masks of frame 0's objects.

    Returns:
        Per clip, T-1 tensors of (K_b + 1, H, W) float32 probabilities, background first.
    """
    batch, length = frames.shape[:2]
    query = model.encode_query(frames.flatten(0, 1))
    return [
        _predict_clip(model, [query.frame(b * length + t) for t in range(length)], first_objects[b].to(frames.dtype))
        for b in range(batch)
    ]


def _predict_clip(model: SwiftNet, queries: list[QueryEncoding], first_objects: Tensor) -> list[Tensor]:
    first_key, first_val = model.encode_memory(queries[0].features, first_objects, backend=TRAIN_BACKEND)
    outputs: list[Tensor] = []
    for t in range(1, len(queries)):
        if t == 1:
            mem_key, mem_val = first_key, first_val
        else:
            previous_objects = outputs[-1][1:].to(first_objects.dtype)
            previous_key, previous_val = model.encode_memory(queries[t - 1].features, previous_objects, backend=TRAIN_BACKEND)
            mem_key, mem_val = torch.cat([first_key, previous_key], 2), torch.cat([first_val, previous_val], 2)
        object_probs = model.segment_objects(queries[t], mem_key, mem_val, backend=TRAIN_BACKEND)
        outputs.append(ops.soft_aggregate(object_probs, backend=TRAIN_BACKEND))
    return outputs


def clip_loss(probabilities: list[Tensor], labels: Tensor) -> Tensor:
    """Mean cross-entropy of the predicted frames.

    Args:
        probabilities: T-1 tensors (K+1, H, W) from :func:`predict_clips`.
        labels: (T, H, W) int64 labels of the whole clip (frame 0 included, not scored).
    """
    losses = [
        F.nll_loss(torch.log(probs.clamp_min(1e-8))[None], labels[t + 1][None])
        for t, probs in enumerate(probabilities)
    ]
    return torch.stack(losses).mean()
