"""SwiftNet's ops (memory read, memory update, reversed sub-pixel, soft aggregation, frame
variation), one checked contract each, several implementations.

``backend=None`` runs the fastest implementation that runs on the tensors' device and takes the
call's inputs (see :mod:`swiftcuda.ops.backends`); ``backend="reference"`` forces the plain PyTorch
spec in :mod:`swiftcuda.ops.reference`. The model and the engine call only these functions for
these ops, so every backend slots in behind them. Each op's schema is declared once, in
:mod:`swiftcuda.ops.schema`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from swiftcuda.ops import backends, reference
from swiftcuda.ops.backends import available_backends
from swiftcuda.ops.reference import novel_pixel_count

__all__ = [
    "available_backends",
    "frame_variation",
    "memory_read",
    "memory_update",
    "memory_update_",
    "novel_pixel_count",
    "rsp",
    "soft_aggregate",
]

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_float(name: str, tensor: Tensor, ndim: int, like: Tensor | None = None) -> None:
    if tensor.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32, float16 or bfloat16, got {tensor.dtype}")
    if like is not None and (tensor.dtype != like.dtype or tensor.device != like.device):
        raise ValueError(
            f"{name} is {tensor.dtype} on {tensor.device} but the other inputs are {like.dtype} on {like.device}"
        )


def _check_lengths(n_valid: Tensor, batch: int, like: Tensor) -> None:
    if n_valid.shape != (batch,) or n_valid.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"n_valid must be an int32 or int64 tensor of shape ({batch},), "
            f"got {n_valid.dtype} of shape {tuple(n_valid.shape)}"
        )
    if n_valid.device != like.device:
        raise ValueError(f"n_valid is on {n_valid.device} but the memory is on {like.device}")


def _check_memory_pair(keys: Tensor, values: Tensor, key_name: str, value_name: str) -> None:
    _check_float(key_name, keys, 3)
    _check_float(value_name, values, 3, like=keys)
    if values.shape[0] != keys.shape[0] or values.shape[2] != keys.shape[2]:
        raise ValueError(
            f"{key_name} {tuple(keys.shape)} and {value_name} {tuple(values.shape)} must agree in batch and length"
        )


def _check_read_options(
    mem_key: Tensor,
    q_key: Tensor,
    affinity: str,
    scale: float | None,
    shrinkage: Tensor | None,
    selection: Tensor | None,
    top_k: int | None,
) -> None:
    batch, key_dim, entries = mem_key.shape
    if affinity not in reference.AFFINITIES:
        raise ValueError(f"affinity must be one of {', '.join(map(repr, reference.AFFINITIES))}, got {affinity!r}")
    if affinity != "l2" and (shrinkage is not None or selection is not None):
        raise ValueError("shrinkage and selection belong to the l2 affinity: pass affinity='l2' or drop them")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale)
    ):
        raise ValueError(f"scale must be a finite number (None for 1/sqrt(Ck)), got {scale!r}")
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= reference.MAX_TOP_K
    ):
        raise ValueError(
            f"top_k must be an integer from 1 to {reference.MAX_TOP_K} (None for the full softmax), got {top_k!r}"
        )
    if shrinkage is not None:
        _check_float("shrinkage", shrinkage, 2, like=mem_key)
        if shrinkage.shape != (batch, entries):
            raise ValueError(f"shrinkage must have shape {(batch, entries)} (B, N), got {tuple(shrinkage.shape)}")
    if selection is not None:
        _check_float("selection", selection, 3, like=mem_key)
        if selection.shape != q_key.shape:
            raise ValueError(f"selection must have shape {tuple(q_key.shape)} (B, Ck, P), got {tuple(selection.shape)}")


def memory_read(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor | None = None,
    *,
    affinity: str = "dot",
    scale: float | None = None,
    shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
    top_k: int | None = None,
    n_valid: Tensor | None = None,
    return_usage: bool = False,
    out: Tensor | None = None,
    backend: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Read the memory at every query pixel (softmax attention), optionally appending the query values.

    One contract for the reads of the STM family: SwiftNet's and STM's dot-product read, and the
    top-k l2 reads of XMem, Cutie and STCN (:func:`swiftcuda.ops.reference.memory_read` is the spec).

    Args:
        mem_key: (B, Ck, N) memory keys.
        mem_val: (B, Cv, N) memory values.
        q_key: (B, Ck, P) query keys.
        q_val: optional (B, Cv, P) query values, appended after the readout.
        affinity: "dot" (``mem_key^T q_key``) or "l2" (the negative squared distance
            ``2 mk^T qk - |mk|^2``, or with a selection ``qe``
            ``2 mk^T (qk qe) - (mk mk)^T qe - sum_c(qe qk^2)``, times the shrinkage).
        scale: factor of the logits; None for ``1/sqrt(Ck)``. Finite.
        shrinkage: optional (B, N) per-entry factor of the l2 logits.
        selection: optional (B, Ck, P) per-pixel channel weights of the l2 affinity.
        top_k: None for the softmax over all valid entries, or 1 to 64: the softmax over each
            query's ``top_k`` largest logits among its valid entries, every other weight 0 (a tie
            at the k-th place may go either way).
        n_valid: optional (B,) int32/int64 valid memory lengths (fixed-capacity buffers).
        return_usage: also return the (B, N) float32 sum over the queries of each entry's weights.
        out: optional output buffer, (B, 2Cv, P) with ``q_val`` and (B, Cv, P) without; fully
            overwritten.
        backend: None for the best available, or "reference", "triton", "cuda", "cpu".

    Returns:
        (B, 2Cv, P) ``[mem_val @ weights, q_val]``, or (B, Cv, P) ``mem_val @ weights`` without
        ``q_val``; with ``return_usage`` the pair (that, usage).
    """
    _check_memory_pair(mem_key, mem_val, "mem_key", "mem_val")
    _check_float("q_key", q_key, 3, like=mem_key)
    if q_val is not None:
        _check_float("q_val", q_val, 3, like=mem_key)
    batch, key_dim, _ = mem_key.shape
    value_dim, pixels = mem_val.shape[1], q_key.shape[2]
    if q_key.shape[:2] != (batch, key_dim) or (q_val is not None and q_val.shape != (batch, value_dim, pixels)):
        raise ValueError(
            f"query shapes q_key {tuple(q_key.shape)}, q_val {None if q_val is None else tuple(q_val.shape)} "
            f"do not match memory keys {tuple(mem_key.shape)} and values {tuple(mem_val.shape)}"
        )
    _check_read_options(mem_key, q_key, affinity, scale, shrinkage, selection, top_k)
    if n_valid is not None:
        _check_lengths(n_valid, batch, mem_key)
    if out is not None:
        _check_float("out", out, 3, like=mem_key)
        out_shape = (batch, value_dim if q_val is None else 2 * value_dim, pixels)
        if out.shape != out_shape:
            raise ValueError(f"out must have shape {out_shape}, got {tuple(out.shape)}")
    sizes = {"key_dim": key_dim, "value_dim": value_dim, "top_k": top_k}
    swiftnet_read = q_val is not None and affinity == "dot" and scale is None and top_k is None and not return_usage
    if swiftnet_read:
        inputs = backends.describe(mem_key, sizes, n_valid=n_valid)
        if out is None:
            return backends.resolve("memory_read", backend, inputs)(mem_key, mem_val, q_key, q_val, n_valid)
        backends.resolve("memory_read.into", backend, inputs)(mem_key, mem_val, q_key, q_val, n_valid, out)
        return out
    inputs = backends.describe(
        mem_key,
        sizes,
        n_valid=n_valid,
        affinity=None if affinity == "dot" else affinity,
        scale=scale,
        shrinkage=shrinkage,
        selection=selection,
        return_usage=return_usage,
        readout_only=q_val is None,
    )
    read = backends.resolve("memory_read_family", backend, inputs)
    result, usage = read(
        mem_key,
        mem_val,
        q_key,
        q_val,
        n_valid,
        shrinkage,
        selection,
        affinity,
        None if scale is None else float(scale),
        top_k,
        return_usage,
    )
    if out is not None:
        out.copy_(result)
        result = out
    return (result, usage) if return_usage else result


def _check_update_inputs(keys: Tensor, values: Tensor, new_key: Tensor, new_val: Tensor, beta: float) -> None:
    _check_memory_pair(keys, values, "memory keys", "memory values")
    _check_memory_pair(new_key, new_val, "new_key", "new_val")
    if new_key.dtype != keys.dtype or new_key.device != keys.device:
        raise ValueError("new keys and values must have the memory's dtype and device")
    if new_key.shape[:2] != keys.shape[:2] or new_val.shape[:2] != values.shape[:2]:
        raise ValueError(
            f"new keys {tuple(new_key.shape)} / values {tuple(new_val.shape)} must match the memory's "
            f"batch and channels {tuple(keys.shape[:2])} / {tuple(values.shape[:2])}"
        )
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")


def _update_sizes(keys: Tensor, values: Tensor) -> dict[str, int]:
    return {"key_dim": keys.shape[1], "value_dim": values.shape[1]}


def memory_update(
    mem_key: Tensor,
    mem_val: Tensor,
    new_key: Tensor,
    new_val: Tensor,
    *,
    beta: float = 0.1,
    backend: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Append the ``k = P - int(P * (1 - beta))`` most novel new pixels to the memory.

    Novelty is the lowest best cosine similarity to the memory keys; ties go to the lower pixel
    index, and the chosen pixels are appended in ascending pixel order.

    Args:
        mem_key: (B, Ck, N) memory keys.
        mem_val: (B, Cv, N) memory values.
        new_key: (B, Ck, P) keys of the new frame.
        new_val: (B, Cv, P) values of the new frame.
        beta: fraction of new pixels kept, in (0, 1].
        backend: None for the best available, or a backend name.

    Returns:
        (B, Ck, N + k) keys and (B, Cv, N + k) values.
    """
    _check_update_inputs(mem_key, mem_val, new_key, new_val, beta)
    inputs = backends.describe(mem_key, _update_sizes(mem_key, mem_val))
    return backends.resolve("memory_update", backend, inputs)(mem_key, mem_val, new_key, new_val, beta)


def memory_update_(
    key_buf: Tensor,
    val_buf: Tensor,
    n_valid: Tensor,
    new_key: Tensor,
    new_val: Tensor,
    *,
    beta: float = 0.1,
    backend: str | None = None,
) -> None:
    """In-place memory update on fixed-capacity buffers whose valid lengths live in a tensor.

    Compares the new pixels with entries ``[0, n_valid[b])``, writes the chosen ones at
    ``n_valid[b]`` onwards and advances ``n_valid``; no host synchronisation is needed by the
    fused backends. Writes past the capacity are dropped and ``n_valid`` stops at the capacity.

    Args:
        key_buf: (B, Ck, capacity) key buffer, modified.
        val_buf: (B, Cv, capacity) value buffer, modified.
        n_valid: (B,) int32/int64 valid lengths on the buffers' device, modified.
        new_key: (B, Ck, P) keys of the new frame; may share storage with the buffers but must
            not overlap the entries the update writes.
        new_val: (B, Cv, P) values of the new frame.
        beta: fraction of new pixels kept, in (0, 1].
        backend: None for the best available, or a backend name.
    """
    _check_update_inputs(key_buf, val_buf, new_key, new_val, beta)
    _check_lengths(n_valid, key_buf.shape[0], key_buf)
    inputs = backends.describe(key_buf, _update_sizes(key_buf, val_buf))
    backends.resolve("memory_update_", backend, inputs)(key_buf, val_buf, n_valid, new_key, new_val, beta)


def rsp(probs: Tensor, *, factor: int = 16, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """Reversed sub-pixel of each object's map and of the union of the other objects' maps.

    Args:
        probs: (O, H, W) object probabilities, background excluded; H, W divisible by ``factor``.
        factor: unshuffle factor.
        backend: None for the best available, or a backend name.

    Returns:
        own, others: each (O, factor**2, H / factor, W / factor), as
        ``torch.nn.functional.pixel_unshuffle`` lays them out; ``others`` unshuffles the clamped
        sum of the other objects' maps.
    """
    _check_float("probs", probs, 3)
    if factor < 1 or probs.shape[1] % factor or probs.shape[2] % factor:
        raise ValueError(
            f"probs of shape {tuple(probs.shape)} cannot be unshuffled by {factor}: "
            "height and width must be multiples of the factor"
        )
    return backends.resolve("rsp", backend, backends.describe(probs))(probs, factor)


def soft_aggregate(object_probs: Tensor, *, backend: str | None = None) -> Tensor:
    """Merge per-object probabilities into a distribution over background and objects.

    Args:
        object_probs: (O, H, W) each object's probability against everything else, O >= 1.
        backend: None for the best available, or a backend name.

    Returns:
        (O + 1, H, W) float32 probabilities, background first (odds normalisation, as STM and
        SwiftNet do: a softmax over clamped log-odds, the background's probability being the
        product of the objects' complements).
    """
    _check_float("object_probs", object_probs, 3)
    if object_probs.shape[0] < 1:
        raise ValueError("soft_aggregate needs at least one object")
    return backends.resolve("soft_aggregate", backend, backends.describe(object_probs))(object_probs)


def frame_variation(
    frame: Tensor,
    previous_frame: Tensor,
    object_probs: Tensor,
    previous_probs: Tensor,
    *,
    frame_threshold: float,
    mask_threshold: float,
    backend: str | None = None,
) -> Tensor:
    """Count the pixels of the objects' region whose image or mask varied since the last frame.

    Args:
        frame, previous_frame: (3, H, W) RGB in [0, 1].
        object_probs, previous_probs: (O, H, W) object probabilities.
        frame_threshold: a pixel's image varied when its mean absolute RGB change exceeds this.
        mask_threshold: its mask varied when an object's probability changed by more than this.
        backend: None for the best available, or a backend name.

    Returns:
        (2,) float32 tensor on the inputs' device, [varied pixels of the region, pixels of the
        region], where the region is where some object's probability exceeds 0.5 in either frame.
        It stays on the device: deciding on it needs no host synchronisation.
    """
    _check_float("frame", frame, 3)
    _check_float("previous_frame", previous_frame, 3, like=frame)
    _check_float("object_probs", object_probs, 3)
    _check_float("previous_probs", previous_probs, 3, like=object_probs)
    size = frame.shape[1:]
    if frame.shape[0] != 3 or previous_frame.shape != frame.shape:
        raise ValueError(f"frames must both be (3, H, W), got {tuple(frame.shape)} and {tuple(previous_frame.shape)}")
    if object_probs.shape[1:] != size or previous_probs.shape != object_probs.shape:
        raise ValueError(
            f"probabilities {tuple(object_probs.shape)} and {tuple(previous_probs.shape)} must be "
            f"(O, {size[0]}, {size[1]}) like the frames"
        )
    impl = backends.resolve("frame_variation", backend, backends.describe(frame))
    return impl(frame, previous_frame, object_probs, previous_probs, frame_threshold, mask_threshold)
