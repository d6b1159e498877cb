"""The training forward pass: predict a clip's frames through the memory, as at inference.

Frame 0 is given; frame t >= 1 reads frame 0 (the long-term memory) and frame t-1 (the previous
frame, encoded from its *predicted* probabilities), exactly as the official evaluation schedule
does for short clips. Gradients flow through the predicted masks into later frames.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from swiftcuda import ops
from swiftcuda.model import QueryEncoding, SwiftNet

#: Ops backend for training: the reference ops are differentiable; the fused kernels need not be.
TRAIN_BACKEND = "reference"


class ClipPrediction(NamedTuple):
    """A clip's predictions, and the keys the matching loss needs.

    Attributes:
        probabilities: T-1 tensors (K+1, H, W) of frames 1..T-1, background first.
        first_keys: (K, Ck, N) memory keys of frame 0, one set per object.
        query_keys: (T, Ck, N) query keys of the clip's frames, N = H/16 * W/16.
    """

    probabilities: list[Tensor]
    first_keys: Tensor
    query_keys: Tensor


def predict_clips(model: SwiftNet, frames: Tensor, first_objects: list[Tensor]) -> list[ClipPrediction]:
    """Predictions of frames 1..T-1 of a batch of clips.

    The trunk encodes all B x T frames in one batch (its batch norms see them all); memory encoding
    and decoding then run clip by clip, since clips hold different numbers of objects.

    Args:
        model: the model (train or eval mode).
        frames: (B, T, 3, H, W) RGB in [0, 1], H and W multiples of 16.
        first_objects: per clip, (K_b, H, W) float masks of frame 0's objects.
    """
    batch, length = frames.shape[:2]
    query = model.encode_query(frames.flatten(0, 1))
    query_keys = query.key.flatten(2).unflatten(0, (batch, length))
    predictions = []
    for b in range(batch):
        queries = [query.frame(b * length + t) for t in range(length)]
        probabilities, first_keys = _predict_clip(model, queries, first_objects[b].to(frames.dtype))
        predictions.append(ClipPrediction(probabilities, first_keys, query_keys[b]))
    return predictions


def _predict_clip(model: SwiftNet, queries: list[QueryEncoding], first_objects: Tensor) -> tuple[list[Tensor], Tensor]:
    first_key, first_val = model.encode_memory(queries[0].features, first_objects, backend=TRAIN_BACKEND)
    outputs: list[Tensor] = []
    for t in range(1, len(queries)):
        if t == 1:
            mem_key, mem_val = first_key, first_val
        else:
            previous_objects = outputs[-1][1:].to(first_objects.dtype)
            previous_key, previous_val = model.encode_memory(
                queries[t - 1].features, previous_objects, backend=TRAIN_BACKEND
            )
            mem_key, mem_val = torch.cat([first_key, previous_key], 2), torch.cat([first_val, previous_val], 2)
        object_probs = model.segment_objects(queries[t], mem_key, mem_val, backend=TRAIN_BACKEND)
        outputs.append(ops.soft_aggregate(object_probs, backend=TRAIN_BACKEND))
    return outputs, first_key


def attention_on_object(mem_key: Tensor, q_key: Tensor, object_weight: Tensor) -> Tensor:
    """Each query's attention mass on the object's memory entries, as the memory read computes it.

    Leading dimensions broadcast.

    Args:
        mem_key: (..., Ck, N) memory keys.
        q_key: (..., Ck, P) query keys.
        object_weight: (..., N) how much of each memory entry is object, in [0, 1].

    Returns:
        (..., P) ``sum_j softmax_j(mem_key[:, j] . q_key[:, p] / sqrt(Ck)) * object_weight[j]``.
    """
    # In float32 even under autocast: a mass rounded to bfloat16 reaches 1.0, and the loss log(1 - mass).
    with torch.autocast(mem_key.device.type, enabled=False):
        scores = mem_key.float().transpose(-1, -2) @ q_key.float() / math.sqrt(mem_key.shape[-2])
        return (object_weight.float()[..., None, :] @ torch.softmax(scores, dim=-2)).squeeze(-2)


def object_masks(labels: Tensor, num_objects: int) -> Tensor:
    """(..., H, W) labels -> (K, ..., H, W) float masks of objects 1..K."""
    return torch.stack([(labels == k).float() for k in range(1, num_objects + 1)])


def object_fractions(labels: Tensor, num_objects: int, factor: int = 16) -> Tensor:
    """(T, H, W) labels -> (K, T, H/factor * W/factor): each object's share of every cell."""
    return F.avg_pool2d(object_masks(labels, num_objects), factor).flatten(2)


def matching_loss(prediction: ClipPrediction, labels: Tensor) -> Tensor:
    """How far frame 0's memory read is from matching pixels, on frames 1..T-1.

    For each object and each query cell, the attention mass the read puts on the object's memory
    entries should be the cell's share of object: binary cross-entropy between the two. It keeps
    the read from collapsing onto the object (every query attending to it; see
    :mod:`swiftcuda.train.diagnostics`), which the segmentation loss alone allows.

    Args:
        prediction: one clip's :class:`ClipPrediction`.
        labels: (T, H, W) int64 labels of the clip.
    """
    fractions = object_fractions(labels, prediction.first_keys.shape[0])  # (K, T, N)
    mass = attention_on_object(prediction.first_keys[:, None], prediction.query_keys[None, 1:], fractions[:, :1])
    mass, target = mass.clamp(1e-6, 1 - 1e-6), fractions[:, 1:]
    # Written out: F.binary_cross_entropy refuses to run under CUDA autocast.
    return -(target * mass.log() + (1 - target) * (1 - mass).log()).mean()


def clip_loss(probabilities: list[Tensor], labels: Tensor) -> Tensor:
    """Mean cross-entropy of the predicted frames.

    Args:
        probabilities: T-1 tensors (K+1, H, W) from :func:`predict_clips`.
        labels: (T, H, W) int64 labels of the whole clip (frame 0 included, not scored).
    """
    losses = [
        F.nll_loss(torch.log(probs.clamp_min(1e-8))[None], labels[t + 1][None]) for t, probs in enumerate(probabilities)
    ]
    return torch.stack(losses).mean()
