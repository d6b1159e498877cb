"""Plain PyTorch implementations of SwiftNet's ops: the specification (and the "reference" backend).

Every other backend (Triton, CUDA C++, C++ CPU) is tested against these functions. They favour
clarity over speed: the memory read and update materialise the full similarity matrix, which the
fused kernels never do. They run in float64 too. Each takes its op's arguments in the order of its
schema (:mod:`swiftcuda.ops.schema`); the memory read's ``out`` makes it serve ``memory_read`` and
``memory_read.into`` alike. Arguments are assumed valid here; :mod:`swiftcuda.ops` checks them.

Shapes use B for the batch (one row per object), Ck / Cv for the key / value channels, N for memory
entries and P for pixels of the 1/16-resolution feature map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def novel_pixel_count(num_pixels: int, beta: float) -> int:
    """How many of ``num_pixels`` new pixels an update appends: ``P - int(P * (1 - beta))``.

    Written exactly as the official SwiftNet code computes it, so that the float rounding of
    ``P * (1 - beta)`` gives the same count (for P = 1620 and beta = 0.1 it is 162).
    """
    return num_pixels - int(num_pixels * (1 - beta))


#: The affinities :func:`memory_read` computes (see its docstring).
AFFINITIES = ("dot", "l2")

#: The largest ``top_k`` the read accepts (the fused kernels keep a per-query list this long).
MAX_TOP_K = 64


def read_logits(
    mem_key: Tensor,
    q_key: Tensor,
    *,
    affinity: str = "dot",
    scale: float | None = None,
    shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
) -> Tensor:
    """The (B, N, P) logits of every memory entry at every query pixel, in the inputs' dtype.

    Args:
        mem_key: (B, Ck, N) memory keys.
        q_key: (B, Ck, P) query keys.
        affinity, scale, shrinkage, selection: as :func:`memory_read` takes them.

    ``affinity="dot"``: ``mem_key^T q_key``. ``affinity="l2"``: the negative squared distance
    weighted by the per-pixel ``selection`` ``qe`` (B, Ck, P),
    ``2 mk^T (qk * qe) - (mk * mk)^T qe - sum_c(qe * qk^2)``, and without a selection
    ``2 mk^T qk - |mk|^2`` (the query-only term ``-|qk|^2`` dropped: it is the same for every
    entry of a query, so it does not change that query's softmax). An l2 logit is then multiplied
    by the per-entry ``shrinkage`` (B, N) when one is given; the dot affinity takes neither a
    selection nor a shrinkage. Every logit is finally divided by ``sqrt(Ck)`` when ``scale`` is
    None, else multiplied by ``scale``.
    """
    key_dim = mem_key.shape[1]
    if affinity == "dot":  # shrinkage and selection belong to the l2 affinity only
        logits = torch.bmm(mem_key.transpose(1, 2), q_key)
    else:
        if selection is not None:
            cross = torch.bmm(mem_key.transpose(1, 2), q_key * selection)
            entry_term = torch.bmm((mem_key * mem_key).transpose(1, 2), selection)
            query_term = (selection * q_key * q_key).sum(dim=1, keepdim=True)  # (B, 1, P)
            logits = 2 * cross - entry_term - query_term
        else:
            cross = torch.bmm(mem_key.transpose(1, 2), q_key)
            logits = 2 * cross - (mem_key * mem_key).sum(dim=1)[:, :, None]
        if shrinkage is not None:
            logits = logits * shrinkage[:, :, None]
    return logits / math.sqrt(key_dim) if scale is None else logits * scale


def read_weights(logits: Tensor, valid: Tensor | None, top_k: int | None) -> Tensor:
    """Softmax weights over the memory axis of (B, N, P) ``logits``; 0 at invalid entries.

    Args:
        logits: (B, N, P).
        valid: optional (B, N) bool, False at entries that must get no weight.
        top_k: None for the softmax over every valid entry; else the softmax over each query's
            ``top_k`` largest logits among its valid entries (chosen by ``torch.topk``), every
            other weight 0. With fewer valid entries than ``top_k`` that is all of them.

    Returns:
        (B, N, P) weights summing to one over each query's valid entries (0 without any).
    """
    if valid is not None:
        logits = logits.masked_fill(~valid[:, :, None], float("-inf"))
    if top_k is None:
        weights = torch.softmax(logits, dim=1)
        return weights if valid is None else weights.masked_fill(~valid[:, :, None], 0.0)
    best, chosen = torch.topk(logits, min(top_k, logits.shape[1]), dim=1)  # (B, k, P)
    # An invalid entry can only be chosen when a query has fewer than top_k valid ones: its -inf
    # logit gets no weight (and a query with none at all, whose softmax is NaN, reads zeros).
    best_weights = torch.softmax(best, dim=1).masked_fill(best == float("-inf"), 0.0)
    return torch.zeros_like(logits).scatter_(1, chosen, best_weights)


def memory_read(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor | None = None,
    n_valid: Tensor | None = None,
    out: Tensor | None = None,
    *,
    affinity: str = "dot",
    scale: float | None = None,
    shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
    top_k: int | None = None,
    return_usage: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention of every query pixel over the memory, optionally concatenated with the query values.

    Computed in the inputs' dtype: called with float64 tensors this is the spec the kernels are
    tested against; called in half precision it shows PyTorch's own rounding in that precision.

    Args:
        mem_key: (B, Ck, N) memory keys.
        mem_val: (B, Cv, N) memory values.
        q_key: (B, Ck, P) query keys.
        q_val: optional (B, Cv, P) query values, appended to the readout.
        n_valid: optional (B,) integer tensor; entries ``j >= n_valid[b]`` of item b are ignored.
            An item with no valid entry reads zeros.
        out: optional (B, 2Cv, P) tensor to write into ((B, Cv, P) without ``q_val``).
        affinity: "dot" or "l2", the logits of :func:`read_logits`.
        scale: factor of the logits; None divides them by ``sqrt(Ck)``.
        shrinkage: optional (B, N) per-entry factor of the l2 logits.
        selection: optional (B, Ck, P) per-pixel channel weights of the l2 affinity.
        top_k: None for the full softmax, else the softmax over each query's ``top_k`` largest
            logits (see :func:`read_weights`).
        return_usage: also return how much weight each entry received.

    Returns:
        (B, 2Cv, P) ``[mem_val @ weights, q_val]``, or (B, Cv, P) ``mem_val @ weights`` when
        ``q_val`` is None, where weights (B, N, P) are :func:`read_weights` of the logits. With
        ``return_usage`` the pair (that, usage): usage (B, N) is ``weights.sum(dim=2)`` in float32
        (float64 for float64 inputs), 0 at invalid entries.
    """
    batch, key_dim, capacity = mem_key.shape
    value_dim = mem_val.shape[1]
    num_entries = capacity
    if n_valid is not None and num_entries > 0:
        # Entries past the longest valid length never contribute: skip them.
        num_entries = max(int(n_valid.max()), 0)
        num_entries = min(num_entries, capacity)
        mem_key, mem_val = mem_key[:, :, :num_entries], mem_val[:, :, :num_entries]
        shrinkage = None if shrinkage is None else shrinkage[:, :num_entries]

    valid = None
    if n_valid is not None:
        # Entries past n_valid are never read: whatever they hold (even NaN) cannot leak in.
        entry = torch.arange(num_entries, device=mem_key.device)
        valid = entry[None, :] < n_valid.to(mem_key.device)[:, None]  # (B, N)
        mem_key = mem_key.masked_fill(~valid[:, None, :], 0.0)
        mem_val = mem_val.masked_fill(~valid[:, None, :], 0.0)
        shrinkage = None if shrinkage is None else shrinkage.masked_fill(~valid, 0.0)
    logits = read_logits(mem_key, q_key, affinity=affinity, scale=scale, shrinkage=shrinkage, selection=selection)
    weights = read_weights(logits, valid, top_k)
    readout = torch.bmm(mem_val, weights)  # (B, Cv, P)

    dtype = mem_val.dtype if q_val is None else q_val.dtype
    channels = value_dim if q_val is None else 2 * value_dim
    if out is None:
        out = torch.empty((batch, channels, q_key.shape[2]), dtype=dtype, device=mem_val.device)
    out[:, :value_dim] = readout
    if q_val is not None:
        out[:, value_dim:] = q_val
    if not return_usage:
        return out
    usage = weights.new_zeros((batch, capacity), dtype=torch.promote_types(weights.dtype, torch.float32))
    usage[:, :num_entries] = weights.sum(dim=2, dtype=usage.dtype)
    return out, usage


def best_match_similarity(mem_key: Tensor, new_key: Tensor, n_valid: Tensor | None = None) -> Tensor:
    """Each new pixel's highest cosine similarity to any valid memory key.

    Args:
        mem_key: (B, Ck, N) memory keys.
        new_key: (B, Ck, P) keys of the new frame.
        n_valid: optional (B,) valid memory lengths.

    Returns:
        (B, P) float32 similarities; ``-inf`` for an item whose memory is empty.
    """
    valid = None
    if n_valid is not None:
        entry = torch.arange(mem_key.shape[2], device=mem_key.device)
        valid = entry[None, None, :] < n_valid.to(mem_key.device)[:, None, None]  # (B, 1, N)
        mem_key = mem_key.masked_fill(~valid, 0.0)
    mem_unit = F.normalize(mem_key.float(), dim=1)
    new_unit = F.normalize(new_key.float(), dim=1)
    cosine = torch.bmm(new_unit.transpose(1, 2), mem_unit)  # (B, P, N)
    if valid is not None:
        cosine = cosine.masked_fill(~valid, float("-inf"))
    if cosine.shape[2] == 0:
        return cosine.new_full(cosine.shape[:2], float("-inf"))
    return cosine.amax(dim=2)


def select_novel_pixels(similarity: Tensor, count: int) -> Tensor:
    """The ``count`` pixels with the lowest best-match similarity, in ascending pixel order.

    Ties are broken towards the lower pixel index, so the choice is deterministic.

    Args:
        similarity: (B, P) best-match similarities.
        count: how many pixels to keep per item.

    Returns:
        (B, count) int64 pixel indices, ascending within each row.
    """
    order = torch.sort(similarity, dim=1, stable=True).indices  # lowest similarity first
    return torch.sort(order[:, :count], dim=1).values


def memory_update(
    mem_key: Tensor,
    mem_val: Tensor,
    new_key: Tensor,
    new_val: Tensor,
    beta: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """The memory followed by the most novel new pixels (pixel-wise memory update).

    Args:
        mem_key: (B, Ck, N) memory keys.
        mem_val: (B, Cv, N) memory values.
        new_key: (B, Ck, P) keys of the new frame.
        new_val: (B, Cv, P) values of the new frame.
        beta: fraction of new pixels to keep; ``k = P - int(P * (1 - beta))``.

    Returns:
        (B, Ck, N + k) keys and (B, Cv, N + k) values: the memory unchanged, then the k new pixels
        whose best cosine similarity to the memory keys is lowest, in ascending pixel order.
    """
    count = novel_pixel_count(new_key.shape[2], beta)
    chosen = select_novel_pixels(best_match_similarity(mem_key, new_key), count)
    picked_key = torch.gather(new_key, 2, chosen[:, None, :].expand(-1, new_key.shape[1], -1))
    picked_val = torch.gather(new_val, 2, chosen[:, None, :].expand(-1, new_val.shape[1], -1))
    return torch.cat([mem_key, picked_key], dim=2), torch.cat([mem_val, picked_val], dim=2)


def memory_update_(
    key_buf: Tensor,
    val_buf: Tensor,
    n_valid: Tensor,
    new_key: Tensor,
    new_val: Tensor,
    beta: float = 0.1,
) -> None:
    """In-place :func:`memory_update` on fixed-capacity buffers.

    Compares the new pixels with entries ``[0, n_valid[b])`` of ``key_buf``, writes the chosen ones
    at ``[n_valid[b], n_valid[b] + k)`` and adds k to ``n_valid``. Writes past the capacity are
    dropped (the pixels with the highest indices go first) and ``n_valid`` stops at the capacity.

    Args:
        key_buf: (B, Ck, capacity) key buffer, modified.
        val_buf: (B, Cv, capacity) value buffer, modified.
        n_valid: (B,) integer valid lengths on the buffers' device, modified.
        new_key: (B, Ck, P) keys of the new frame; must not overlap the entries written.
        new_val: (B, Cv, P) values of the new frame.
        beta: fraction of new pixels to keep.
    """
    count = novel_pixel_count(new_key.shape[2], beta)
    capacity = key_buf.shape[2]
    similarity = best_match_similarity(key_buf, new_key, n_valid)
    chosen = select_novel_pixels(similarity, count)
    for item, start in enumerate(n_valid.tolist()):
        fits = max(0, min(count, capacity - start))
        picked = chosen[item, :fits]
        key_buf[item, :, start : start + fits] = new_key[item][:, picked]
        val_buf[item, :, start : start + fits] = new_val[item][:, picked]
        n_valid[item] = start + fits


def rsp(probs: Tensor, factor: int = 16) -> tuple[Tensor, Tensor]:
    """Reversed sub-pixel: each object's map and the union of the others, pixel-unshuffled.

    Args:
        probs: (O, H, W) object probabilities (background excluded); H and W divisible by factor.
        factor: the unshuffle factor (16 in SwiftNet, taking masks to the 1/16 feature grid).

    Returns:
        own, others: each (O, factor**2, H / factor, W / factor). ``others[o]`` unshuffles
        ``clamp(sum of the other objects' maps, 0, 1)``; channel ``i * factor + j`` holds the pixel
        at offset (i, j) of each factor x factor cell (``torch.nn.functional.pixel_unshuffle``).
    """
    num_objects = probs.shape[0]
    exclude_self = 1.0 - torch.eye(num_objects, dtype=torch.float32, device=probs.device)
    others = torch.einsum("po,ohw->phw", exclude_self, probs.float()).clamp_(0.0, 1.0)
    own = F.pixel_unshuffle(probs[:, None], factor)
    others = F.pixel_unshuffle(others.to(probs.dtype)[:, None], factor)
    return own, others


#: Probabilities are clamped to [EPS, 1 - EPS] before taking log-odds, as the official code does.
AGGREGATION_EPS = 1e-7


def soft_aggregate(object_probs: Tensor) -> Tensor:
    """Merge independent per-object probabilities into one distribution over background and objects.

    The background probability is the product of the objects' complements; each class's odds
    ``p / (1 - p)`` (after clamping p to [1e-7, 1 - 1e-7]) are then normalised, which is the softmax
    over log-odds of STM and SwiftNet.

    Args:
        object_probs: (O, H, W) probability of each object against everything else.

    Returns:
        (O + 1, H, W) float32 probabilities, background first, summing to one at every pixel.
    """
    probs = object_probs.float()
    background = torch.prod(1.0 - probs, dim=0, keepdim=True)
    clamped = torch.cat([background, probs], dim=0).clamp_(AGGREGATION_EPS, 1.0 - AGGREGATION_EPS)
    return torch.softmax(torch.log(clamped / (1.0 - clamped)), dim=0)


def frame_variation(
    frame: Tensor,
    previous_frame: Tensor,
    object_probs: Tensor,
    previous_probs: Tensor,
    frame_threshold: float,
    mask_threshold: float,
) -> Tensor:
    """Per-pixel variation between two consecutive frames, counted over the objects' region.

    A pixel's image varied when its mean absolute RGB change exceeds ``frame_threshold``; its mask
    varied when some object's probability changed by more than ``mask_threshold``. The object
    region holds the pixels where some object's probability exceeds 0.5 in either frame.

    Args:
        frame, previous_frame: (3, H, W) RGB in [0, 1].
        object_probs, previous_probs: (O, H, W) object probabilities of the two frames.
        frame_threshold: th_f.
        mask_threshold: th_m.

    Returns:
        (2,) float32 tensor: [pixels of the region whose image or mask varied, pixels of the region].
    """
    image_varied = (frame.float() - previous_frame.float()).abs().mean(dim=0) > frame_threshold
    mask_varied = (object_probs.float() - previous_probs.float()).abs().amax(dim=0) > mask_threshold
    region = (object_probs.amax(dim=0) > 0.5) | (previous_probs.amax(dim=0) > 0.5)
    varied = (image_varied | mask_varied) & region
    return torch.stack([varied.sum(), region.sum()]).float()


def memory_read_family(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor | None = None,
    n_valid: Tensor | None = None,
    shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
    affinity: str = "dot",
    scale: float | None = None,
    top_k: int | None = None,
    return_usage: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`memory_read` with the family's options, under the op's schema: the result, and the
    (B, N) float32 usage (an empty (0, 0) tensor without ``return_usage``)."""
    result = memory_read(
        mem_key,
        mem_val,
        q_key,
        q_val,
        n_valid,
        affinity=affinity,
        scale=scale,
        shrinkage=shrinkage,
        selection=selection,
        top_k=top_k,
        return_usage=return_usage,
    )
    if return_usage:
        return result
    return result, torch.empty((0, 0), dtype=torch.float32, device=mem_key.device)
