"""The per-frame step as four export-friendly torch modules, with the memory as explicit state.

The engine (:class:`~swiftcuda.inference.Segmenter`) keeps its memory in a
:class:`~swiftcuda.inference.MemoryStore` and runs the three hot operations through fused kernels.
Here the same step is cut into four pure functions of tensors, written with the reference math of
those operations in plain PyTorch ops that every ONNX runtime has (the read as MatMul and Softmax,
reversed sub-pixel as reshapes and transposes, the novel-pixel choice as TopK, scatters and
gathers), and without any shape-dependent Python branch or data-dependent shape, so that frame
size, object count and capacity stay dynamic in the exported graphs:

- :class:`QueryEncoderGraph` (``encode_query``): a padded frame -> its query key and value and
  the trunk features the rest of the step uses;
- :class:`ReadDecodeGraph` (``read_and_decode``): the query and the memory -> probabilities over
  background and objects (the soft aggregation included);
- :class:`MemoryEncoderGraph` (``encode_memory``): trunk features and object probabilities -> the
  frame's memory keys and values (the previous-frame slot of the next step);
- :class:`MemoryUpdateGraph` (``update_memory``): lets the previous frame into the long-term
  memory, in full or its most novel pixels, per object, evicting at the fixed capacity.

State between steps, for O objects, keys of Ck and values of Cv channels, a (h, w) = (H/16, W/16)
memory grid and a long-term capacity of N entries per object:

- ``previous_keys`` (O, Ck, h, w), ``previous_values`` (O, Cv, h, w): the previous frame, read in
  full (4-D, so that its size is the frame's and needs no dimension of its own);
- ``long_term_keys`` (O, Ck, N), ``long_term_values`` (O, Cv, N): the long-term memory, entries
  ``[0, long_term_length[o])`` valid, the object's first frame at the front;
- ``long_term_length`` (O,) int64 valid entries, ``first_length`` (O,) int64 entries of the first
  frame (never evicted).

The modules take a SwiftNet prepared for inference (:func:`~swiftcuda.optimize.prepare`
without tuning or Winograd, so that only standard layers remain).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swiftcuda.model import SwiftNet
from swiftcuda.model.backbone import TrunkFeatures
from swiftcuda.model.swiftnet import foreground_probability
from swiftcuda.ops.reference import best_match_similarity, rsp, soft_aggregate


class QueryEncoderGraph(nn.Module):
    """``encode_query``: (1, 3, H, W) float32 RGB in [0, 1], H and W multiples of 16 ->
    key (1, Ck, h, w), value (1, Cv, h, w), r4 (1, C4, h, w), r3 (1, C3, 2h, 2w),
    r2 (1, C2, 4h, 4w), c1 (1, C1, 8h, 8w), in the model's dtype."""

    def __init__(self, model: SwiftNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: Tensor) -> tuple[Tensor, ...]:
        query = self.model.encode_query(frame)
        return (query.key, query.value, *query.features)


def masked_memory_read(mem_key: Tensor, mem_val: Tensor, q_key: Tensor, n_valid: Tensor) -> Tensor:
    """The memory read of :func:`swiftcuda.ops.reference.memory_read` without the query values and
    without a data-dependent truncation: entries past ``n_valid`` get zero weight.

    Args:
        mem_key: (O, Ck, N), mem_val: (O, Cv, N), q_key: (O, Ck, P), n_valid: (O,) integer.

    Returns:
        (O, Cv, P) readout.
    """
    entry = torch.arange(mem_key.shape[2], device=mem_key.device)
    valid = entry[None, :, None] < n_valid[:, None, None]  # (O, N, 1)
    logits = torch.bmm(mem_key.transpose(1, 2), q_key) / math.sqrt(mem_key.shape[1])  # (O, N, P)
    weights = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=1)
    return torch.bmm(mem_val, weights)


class ReadDecodeGraph(nn.Module):
    """``read_and_decode``: read the memory (previous frame in full beside the long-term entries)
    at every query pixel, decode each object and merge them.

    Inputs: key (1, Ck, h, w), value (1, Cv, h, w), r3, r2 (from ``encode_query``), the state's
    previous_keys, previous_values, long_term_keys, long_term_values and long_term_length.
    Output: probs (O + 1, H, W) float32 at the padded size, background first.
    """

    def __init__(self, model: SwiftNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        key: Tensor,
        value: Tensor,
        r3: Tensor,
        r2: Tensor,
        previous_keys: Tensor,
        previous_values: Tensor,
        long_term_keys: Tensor,
        long_term_values: Tensor,
        long_term_length: Tensor,
    ) -> Tensor:
        objects, _, height, width = previous_keys.shape
        # The engine's buffer layout: the previous frame's entries, then the long-term ones.
        mem_key = torch.cat([previous_keys.flatten(2), long_term_keys], dim=2)
        mem_val = torch.cat([previous_values.flatten(2), long_term_values], dim=2)
        n_valid = long_term_length + height * width
        q_key = key.flatten(2).expand(objects, -1, -1)
        q_val = value.flatten(2).expand(objects, -1, -1)
        readout = torch.cat([masked_memory_read(mem_key, mem_val, q_key, n_valid), q_val], dim=1)
        readout = readout.view(objects, -1, height, width)
        logits = self.model.Decoder(self.model.aspp(readout), r3, r2)
        return soft_aggregate(foreground_probability(logits))


class MemoryEncoderGraph(nn.Module):
    """``encode_memory``: the frame's trunk features r4, r3, r2, c1 and object_probs (O, H, W)
    float32 (background excluded, padded size) -> keys (O, Ck, h, w), values (O, Cv, h, w).

    Unlike :meth:`SwiftNet.encode_memory` there is no lone-object shortcut: with one object the
    other objects' map is zero and so are its convolutions (no bias), the same sums.
    """

    def __init__(self, model: SwiftNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, r4: Tensor, r3: Tensor, r2: Tensor, c1: Tensor, object_probs: Tensor) -> tuple[Tensor, Tensor]:
        factor = self.model.config.rsp_factor
        probs = object_probs.to(r4.dtype)
        own_small, others_small = rsp(probs, factor)
        others = F.pixel_shuffle(others_small, factor)
        fused = self.model.LAE(TrunkFeatures(r4, r3, r2, c1), probs[:, None], others, own_small, others_small)
        return self.model.KV_M_r4(fused)


def _gather_entries(buffer: Tensor, index: Tensor) -> Tensor:
    """buffer (O, C, M) and index (O, N) -> (O, C, N): ``buffer[o, :, index[o, n]]``."""
    return torch.gather(buffer, 2, index[:, None, :].expand(-1, buffer.shape[1], -1))


class MemoryUpdateGraph(nn.Module):
    """``update_memory``: the memory update of the previous frame, per object.

    Inputs: the state's long_term_keys (O, Ck, N), long_term_values (O, Cv, N), long_term_length
    and first_length (O,) int64 (the entries of the given frames, a protected prefix),
    previous_keys (O, Ck, h, w) and previous_values (O, Cv, h, w); in_full (O,) bool: keep every
    pixel of the previous frame (its mask was given), inserted at the end of the protected prefix,
    which grows by P = h * w; novel (O,) bool: append its ``novel_count`` (0-dim int64,
    ``P - int(P * (1 - beta))``) pixels least similar to the object's long-term keys, in ascending
    pixel order. At most one of the two is true per object; an object with neither is left unchanged.

    Before appending, an object whose memory would overflow drops its oldest entries after its
    given frames (FIFO), as :class:`~swiftcuda.inference.MemoryStore` does (whose host side
    checks that the given frames leave room).

    Outputs: the new long_term_keys, long_term_values, long_term_length, first_length.
    """

    def forward(
        self,
        long_term_keys: Tensor,
        long_term_values: Tensor,
        long_term_length: Tensor,
        first_length: Tensor,
        previous_keys: Tensor,
        previous_values: Tensor,
        in_full: Tensor,
        novel: Tensor,
        novel_count: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        capacity = long_term_keys.shape[2]
        new_keys, new_values = previous_keys.flatten(2), previous_values.flatten(2)
        pixels = new_keys.shape[2]
        all_pixels = torch.ones_like(long_term_length) * pixels
        incoming = torch.where(in_full, all_pixels, torch.where(novel, novel_count, torch.zeros_like(novel_count)))

        # Eviction: entries after the first frame move down by the excess (a gather, as the
        # engine's device-side eviction does); what lies past the new length is never read.
        excess = (long_term_length + incoming - capacity).clamp(min=0)
        entry = torch.arange(capacity, device=long_term_keys.device)[None, :]
        source = torch.where(entry >= first_length[:, None], entry + excess[:, None], entry).clamp(max=capacity - 1)
        keys, values = _gather_entries(long_term_keys, source), _gather_entries(long_term_values, source)
        length = long_term_length - excess

        # The novel pixels: ranked by best-match similarity, lowest first, ties to the lower pixel
        # (ONNX TopK's order), as swiftcuda.ops.reference.select_novel_pixels chooses them.
        similarity = best_match_similarity(keys, new_keys, length)
        order = torch.topk(similarity, pixels, dim=1, largest=False).indices  # (O, P) pixels by novelty
        pixel = torch.arange(pixels, device=keys.device)[None, :].expand(order.shape[0], -1)
        rank = torch.zeros_like(order).scatter(1, order, pixel)
        chosen = (rank < novel_count) | in_full[:, None]
        # The append order: chosen pixels first, in ascending pixel order (the rest after them).
        taken = chosen.long().cumsum(dim=1)
        position = torch.where(chosen, taken - 1, taken[:, -1:] + pixel - taken)
        appended = torch.zeros_like(order).scatter(1, position, pixel)

        # Where the run goes: after the given frames for a given mask (the novel entries move up
        # by P), at the end for novel pixels.
        at = torch.where(in_full, first_length, length)[:, None]
        moved = torch.where(entry >= at + incoming[:, None], entry - incoming[:, None], entry)
        keys, values = _gather_entries(keys, moved), _gather_entries(values, moved)
        slot = entry - at  # (O, N): position of each entry in the inserted run
        written = ((slot >= 0) & (slot < incoming[:, None]))[:, None, :]
        source_pixel = torch.gather(appended, 1, slot.clamp(0, pixels - 1))
        keys = torch.where(written, _gather_entries(new_keys, source_pixel), keys)
        values = torch.where(written, _gather_entries(new_values, source_pixel), values)
        first = torch.where(in_full, first_length + all_pixels, first_length)
        return keys, values, length + incoming, first


#: The four graphs, in the order a step runs them; the names of the exported files.
GRAPH_NAMES = ("encode_query", "read_and_decode", "encode_memory", "update_memory")
