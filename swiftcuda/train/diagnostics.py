"""Does the memory read match pixels? A check for trained weights.

A memory read that matches pixels sends an object pixel's attention to the object's memory entries
and a background pixel's attention to the background's. Weights can instead learn to make every
memory key of the object outscore every other key, for every query: all query pixels then read the
same summary of the object, and the decoder tells object from background by comparing that summary
with the query's own value, a global appearance template. Such weights follow objects that look
unlike their surroundings and lose others for good, even in a frame read against itself.

:func:`self_read_attention` measures this on one annotated frame, read against its own memory
encoding: with matching weights object queries put most of their attention on the object and
background queries little; a collapsed read puts nearly all of both on the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from swiftcuda.errors import InputError
from swiftcuda.model import SwiftNet
from swiftcuda.train.forward import attention_on_object, object_fractions

#: A 16x16 cell counts as object when at least this fraction of it is object, as background when
#: at most ``BACKGROUND_FRACTION`` is; mixed cells are left out of both means.
OBJECT_FRACTION = 0.5
BACKGROUND_FRACTION = 0.05


@dataclass(frozen=True)
class SelfReadAttention:
    """Mean attention mass that query pixels put on the object's memory entries.

    Attributes:
        object_queries: over the object's cells (near 1 for a matching read).
        background_queries: over background cells (near 0 for a matching read, near 1 when every
            query reads the object).
    """

    object_queries: float
    background_queries: float


@torch.no_grad()
def self_read_attention(model: SwiftNet, frame: Tensor, mask: Tensor) -> SelfReadAttention:
    """Read one frame against its own memory encoding and measure where the attention goes.

    Args:
        model: the model (eval mode).
        frame: (3, H, W) RGB in [0, 1]; H and W multiples of 16.
        mask: (H, W) bool, the object's pixels.

    Raises:
        InputError: the sizes do not fit, or the mask has no object or no background cell.
    """
    height, width = mask.shape
    if frame.shape != (3, height, width) or height % 16 or width % 16:
        raise InputError(
            f"frame {tuple(frame.shape)} and mask {tuple(mask.shape)}: need (3, H, W) and (H, W), H and W multiples of 16"
        )
    parameter = next(model.parameters())
    frame = frame.to(parameter.device, parameter.dtype)
    object_map = mask.to(parameter.device, parameter.dtype)
    query = model.encode_query(frame[None])
    mem_key, _ = model.encode_memory(query.features, object_map[None], backend="reference")
    fraction = object_fractions(mask[None].to(parameter.device), num_objects=1)[0, 0]  # (N,)
    on_object = attention_on_object(mem_key[0], query.key.flatten(2)[0], fraction)
    object_cells, background_cells = fraction >= OBJECT_FRACTION, fraction <= BACKGROUND_FRACTION
    if not object_cells.any() or not background_cells.any():
        raise InputError("the mask needs at least one 16x16 cell mostly object and one almost free of it")
    return SelfReadAttention(
        object_queries=float(on_object[object_cells].mean()),
        background_queries=float(on_object[background_cells].mean()),
    )
