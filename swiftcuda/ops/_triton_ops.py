"""The Triton ops, registered with torch.library in the ``swiftcuda_triton`` namespace.

Each op of :data:`swiftcuda.ops.schema.SCHEMAS` becomes ``torch.ops.swiftcuda_triton.<name>``
under that schema (the C++ extension's ops have the same), as a :func:`torch.library.triton_op`,
so that ``torch.compile`` traces through to the Triton kernels (and CUDA graphs capture them).

The functions :func:`memory_read_into`, :func:`memory_update` and :func:`memory_update_in_place`
run the same launches with a tuning knob the schemas leave out: ``num_splits``, the memory-axis
splits (0 lets the launcher choose), which the kernel tests force.

Which code runs, per call:

- CUDA tensors, compiled kernels: the kernels, through ``wrap_triton``.
- Under ``TRITON_INTERPRET=1`` (any device): interpreted kernels cannot be traced (they run Python
  on host copies of the tensors), so each op hands its launch to a private opaque custom op
  (``swiftcuda_triton::_interpreted_<name>``) with a fake implementation. ``torch.compile`` and
  ``opcheck`` then see an ordinary custom op in place of the kernel launch.
- CPU tensors without the interpreter: the reference (plain PyTorch).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.library import custom_op, triton_op

from swiftcuda.ops import _triton_launch as launch
from swiftcuda.ops import reference, schema
from swiftcuda.ops.reference import AGGREGATION_EPS, novel_pixel_count

#: The torch.ops namespace of the Triton ops.
NAMESPACE = "swiftcuda_triton"


def _registered(op: str):
    """Register the decorated function as ``swiftcuda_triton::<op>`` with the op's declared schema.

    Some torch releases ignore ``schema=`` here and infer the schema from the type hints, so the
    functions' hints state the same types (tests/ops/test_schema.py checks the registered schemas).
    """

    def register(function):
        return triton_op(
            f"{NAMESPACE}::{op}", function, mutates_args=schema.mutated_arguments(op), schema=schema.SCHEMAS[op]
        )

    return register


def _runs_reference(tensor: Tensor) -> bool:
    """CPU tensors run the reference unless the kernels are interpreted."""
    return tensor.device.type == "cpu" and not launch.INTERPRETED


# --- opaque launches for the interpreter ------------------------------------------------------
# Each mutates the outputs its caller allocated; a fake implementation that does nothing is
# exactly right for an op that only writes into its arguments.


@custom_op("swiftcuda_triton::_interpreted_memory_read", mutates_args={"out"})
def _interpreted_memory_read(
    mem_key: Tensor, mem_val: Tensor, q_key: Tensor, q_val: Tensor, n_valid: Tensor | None, out: Tensor, num_splits: int
) -> None:
    launch.launch_memory_read(mem_key, mem_val, q_key, q_val, n_valid, out, num_splits)


@_interpreted_memory_read.register_fake
def _(mem_key, mem_val, q_key, q_val, n_valid, out, num_splits) -> None:
    return None


@custom_op("swiftcuda_triton::_interpreted_memory_update", mutates_args={"key_buf", "val_buf", "n_valid"})
def _interpreted_memory_update(
    key_buf: Tensor,
    val_buf: Tensor,
    n_valid: Tensor | None,
    new_key: Tensor,
    new_val: Tensor,
    count: int,
    compared: int,
    num_splits: int,
) -> None:
    launch.launch_memory_update(key_buf, val_buf, n_valid, new_key, new_val, count, compared, num_splits)


@_interpreted_memory_update.register_fake
def _(key_buf, val_buf, n_valid, new_key, new_val, count, compared, num_splits) -> None:
    return None


@custom_op("swiftcuda_triton::_interpreted_rsp", mutates_args={"own", "others"})
def _interpreted_rsp(probs: Tensor, factor: int, own: Tensor, others: Tensor) -> None:
    launch.launch_rsp(probs, factor, own, others)


@_interpreted_rsp.register_fake
def _(probs, factor, own, others) -> None:
    return None


@custom_op("swiftcuda_triton::_interpreted_soft_aggregate", mutates_args={"out"})
def _interpreted_soft_aggregate(object_probs: Tensor, out: Tensor) -> None:
    launch.launch_soft_aggregate(object_probs, out, AGGREGATION_EPS)


@_interpreted_soft_aggregate.register_fake
def _(object_probs, out) -> None:
    return None


@custom_op("swiftcuda_triton::_interpreted_frame_variation", mutates_args={"counts"})
def _interpreted_frame_variation(
    frame: Tensor,
    previous_frame: Tensor,
    object_probs: Tensor,
    previous_probs: Tensor,
    frame_threshold: float,
    mask_threshold: float,
    counts: Tensor,
) -> None:
    launch.launch_frame_variation(
        frame, previous_frame, object_probs, previous_probs, frame_threshold, mask_threshold, counts
    )


@_interpreted_frame_variation.register_fake
def _(frame, previous_frame, object_probs, previous_probs, frame_threshold, mask_threshold, counts) -> None:
    return None


# --- launches, with the split count the schemas leave out ---------------------------------------


def memory_read_into(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor,
    n_valid: Tensor | None,
    out: Tensor,
    num_splits: int = 0,
) -> None:
    """Write ``[V softmax(K^T Q / sqrt(Ck)), q_val]`` into ``out``.

    Args:
        mem_key: (B, Ck, N); mem_val: (B, Cv, N); q_key: (B, Ck, P); q_val: (B, Cv, P).
        n_valid: optional (B,) int32/int64 valid lengths, read on the device.
        out: (B, 2Cv, P), fully overwritten.
        num_splits: memory-axis splits (0: automatic).
    """
    if launch.INTERPRETED:
        torch.ops.swiftcuda_triton._interpreted_memory_read(mem_key, mem_val, q_key, q_val, n_valid, out, num_splits)
    elif _runs_reference(mem_key):
        reference.memory_read(mem_key, mem_val, q_key, q_val, n_valid, out)
    else:
        launch.launch_memory_read(mem_key, mem_val, q_key, q_val, n_valid, out, num_splits)


def _append_novel(
    key_buf: Tensor,
    val_buf: Tensor,
    n_valid: Tensor | None,
    new_key: Tensor,
    new_val: Tensor,
    count: int,
    compared: int,
    num_splits: int,
) -> None:
    if launch.INTERPRETED:
        torch.ops.swiftcuda_triton._interpreted_memory_update(
            key_buf, val_buf, n_valid, new_key, new_val, count, compared, num_splits
        )
    else:
        launch.launch_memory_update(key_buf, val_buf, n_valid, new_key, new_val, count, compared, num_splits)


def memory_update(
    mem_key: Tensor, mem_val: Tensor, new_key: Tensor, new_val: Tensor, beta: float, num_splits: int = 0
) -> tuple[Tensor, Tensor]:
    """The memory followed by the ``k = P - int(P (1 - beta))`` most novel new pixels.

    Args:
        mem_key: (B, Ck, N); mem_val: (B, Cv, N); new_key: (B, Ck, P); new_val: (B, Cv, P).
        beta: fraction of new pixels kept.
        num_splits: memory-axis splits of the similarity sweep (0: automatic).

    Returns:
        (B, Ck, N + k) keys and (B, Cv, N + k) values.
    """
    if _runs_reference(mem_key):
        return reference.memory_update(mem_key, mem_val, new_key, new_val, beta)
    batch, key_dim, entries = mem_key.shape
    count = novel_pixel_count(new_key.shape[2], beta)
    keys = mem_key.new_empty((batch, key_dim, entries + count))
    values = mem_val.new_empty((batch, mem_val.shape[1], entries + count))
    keys[:, :, :entries] = mem_key
    values[:, :, :entries] = mem_val
    # The kernels compare with the copied memory and append right after it.
    _append_novel(keys, values, None, new_key, new_val, count, entries, num_splits)
    return keys, values


def memory_update_in_place(
    key_buf: Tensor,
    val_buf: Tensor,
    n_valid: Tensor,
    new_key: Tensor,
    new_val: Tensor,
    beta: float,
    num_splits: int = 0,
) -> None:
    """In-place update of fixed-capacity buffers whose valid lengths ``n_valid`` live on the device.

    Args:
        key_buf: (B, Ck, capacity); val_buf: (B, Cv, capacity): written at ``n_valid[b]`` onwards.
        n_valid: (B,) int32/int64, advanced by k (stopping at the capacity).
        new_key: (B, Ck, P); new_val: (B, Cv, P), not overlapping the columns written.
        beta: fraction of new pixels kept.
        num_splits: memory-axis splits of the similarity sweep (0: automatic).
    """
    if _runs_reference(key_buf):
        reference.memory_update_(key_buf, val_buf, n_valid, new_key, new_val, beta)
        return
    count = novel_pixel_count(new_key.shape[2], beta)
    _append_novel(key_buf, val_buf, n_valid, new_key, new_val, count, key_buf.shape[2], num_splits)


# --- the registered ops (schemas in swiftcuda.ops.schema) --------------------------------------


@_registered("memory_read")
def _memory_read(
    mem_key: Tensor, mem_val: Tensor, q_key: Tensor, q_val: Tensor, n_valid: Tensor | None = None
) -> Tensor:
    """(B, 2Cv, P): the read, then ``q_val``."""
    batch, value_dim, pixels = q_val.shape
    out = torch.empty((batch, 2 * value_dim, pixels), dtype=q_val.dtype, device=q_val.device)
    memory_read_into(mem_key, mem_val, q_key, q_val, n_valid, out)
    return out


@_registered("memory_read.into")
def _memory_read_into(
    mem_key: Tensor, mem_val: Tensor, q_key: Tensor, q_val: Tensor, n_valid: Tensor | None, out: Tensor
) -> None:
    memory_read_into(mem_key, mem_val, q_key, q_val, n_valid, out)


@_registered("memory_update")
def _memory_update(
    mem_key: Tensor, mem_val: Tensor, new_key: Tensor, new_val: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    return memory_update(mem_key, mem_val, new_key, new_val, beta)


@_registered("memory_update_")
def _memory_update_in_place(
    key_buf: Tensor, val_buf: Tensor, n_valid: Tensor, new_key: Tensor, new_val: Tensor, beta: float
) -> None:
    memory_update_in_place(key_buf, val_buf, n_valid, new_key, new_val, beta)


@_registered("rsp")
def _rsp(probs: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Own map and clamped union of the others, pixel-unshuffled.

    Args:
        probs: (O, H, W), H and W multiples of ``factor``.

    Returns:
        own, others: (O, factor**2, H / factor, W / factor) in ``probs``' dtype.
    """
    if _runs_reference(probs):
        own, others = reference.rsp(probs, factor)
        return own.contiguous(), others.contiguous()
    objects, height, width = probs.shape
    shape = (objects, factor * factor, height // factor, width // factor)
    own, others = probs.new_empty(shape), probs.new_empty(shape)
    if launch.INTERPRETED:
        torch.ops.swiftcuda_triton._interpreted_rsp(probs, factor, own, others)
    else:
        launch.launch_rsp(probs, factor, own, others)
    return own, others


@_registered("soft_aggregate")
def _soft_aggregate(object_probs: Tensor) -> Tensor:
    """(O, H, W) object probabilities -> (O + 1, H, W) float32 distribution, background first."""
    if _runs_reference(object_probs):
        return reference.soft_aggregate(object_probs)
    objects, height, width = object_probs.shape
    out = torch.empty((objects + 1, height, width), dtype=torch.float32, device=object_probs.device)
    if launch.INTERPRETED:
        torch.ops.swiftcuda_triton._interpreted_soft_aggregate(object_probs, out)
    else:
        launch.launch_soft_aggregate(object_probs, out, AGGREGATION_EPS)
    return out


@_registered("frame_variation")
def _frame_variation(
    frame: Tensor,
    previous_frame: Tensor,
    object_probs: Tensor,
    previous_probs: Tensor,
    frame_threshold: float,
    mask_threshold: float,
) -> Tensor:
    """(2,) float32 [varied pixels of the objects' region, pixels of the region], on the device.

    Args:
        frame, previous_frame: (3, H, W) RGB in [0, 1]; object_probs, previous_probs: (O, H, W).
    """
    if _runs_reference(frame):
        return reference.frame_variation(
            frame, previous_frame, object_probs, previous_probs, frame_threshold, mask_threshold
        )
    counts = torch.zeros(2, dtype=torch.float32, device=frame.device)
    if launch.INTERPRETED:
        torch.ops.swiftcuda_triton._interpreted_frame_variation(
            frame, previous_frame, object_probs, previous_probs, frame_threshold, mask_threshold, counts
        )
    else:
        launch.launch_frame_variation(
            frame, previous_frame, object_probs, previous_probs, frame_threshold, mask_threshold, counts
        )
    return counts


# --- the STM family's read ----------------------------------------------------------------------


@custom_op("swiftcuda_triton::_interpreted_memory_read_family", mutates_args={"out", "usage"})
def _interpreted_memory_read_family(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor | None,
    n_valid: Tensor | None,
    out: Tensor,
    usage: Tensor | None,
    shrinkage: Tensor | None,
    selection: Tensor | None,
    affinity: str,
    scale: float | None,
    top_k: int | None,
    num_splits: int,
) -> None:
    launch.launch_memory_read_family(
        mem_key,
        mem_val,
        q_key,
        q_val,
        n_valid,
        out,
        usage,
        affinity=affinity,
        scale=scale,
        shrinkage=shrinkage,
        selection=selection,
        top_k=top_k,
        num_splits=num_splits,
    )


@_interpreted_memory_read_family.register_fake
def _(
    mem_key, mem_val, q_key, q_val, n_valid, out, usage, shrinkage, selection, affinity, scale, top_k, num_splits
) -> None:
    return None


@triton_op("swiftcuda_triton::memory_read_family_into", mutates_args={"out", "usage"})
def memory_read_family_into(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor | None,
    n_valid: Tensor | None,
    out: Tensor,
    usage: Tensor | None,
    shrinkage: Tensor | None,
    selection: Tensor | None,
    affinity: str,
    scale: float | None,
    top_k: int | None,
    num_splits: int = 0,
) -> None:
    """The STM family's read into ``out`` (and ``usage``); see :func:`reference.memory_read`.

    Args:
        mem_key: (B, Ck, N); mem_val: (B, Cv, N); q_key: (B, Ck, P).
        q_val: optional (B, Cv, P), copied after the readout.
        n_valid: optional (B,) int32/int64 valid lengths, read on the device.
        out: (B, 2Cv, P) with q_val, (B, Cv, P) without; fully overwritten.
        usage: optional (B, N) float32, overwritten with each entry's total weight.
        shrinkage: optional (B, N); selection: optional (B, Ck, P) (l2 only).
        affinity: "dot" or "l2"; scale: None for 1/sqrt(Ck); top_k: None or 1 to 64.
        num_splits: memory-axis splits (0: automatic).
    """
    if launch.INTERPRETED:
        torch.ops.swiftcuda_triton._interpreted_memory_read_family(
            mem_key,
            mem_val,
            q_key,
            q_val,
            n_valid,
            out,
            usage,
            shrinkage,
            selection,
            affinity,
            scale,
            top_k,
            num_splits,
        )
    elif _runs_reference(mem_key):
        result = reference.memory_read(
            mem_key,
            mem_val,
            q_key,
            q_val,
            n_valid,
            out,
            affinity=affinity,
            scale=scale,
            shrinkage=shrinkage,
            selection=selection,
            top_k=top_k,
            return_usage=usage is not None,
        )
        if usage is not None:
            usage.copy_(result[1])
    else:
        launch.launch_memory_read_family(
            mem_key,
            mem_val,
            q_key,
            q_val,
            n_valid,
            out,
            usage,
            affinity=affinity,
            scale=scale,
            shrinkage=shrinkage,
            selection=selection,
            top_k=top_k,
            num_splits=num_splits,
        )


@_registered("memory_read_family")
def _memory_read_family(
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
    """The family's read under its declared schema: the (B, 2Cv, P) or (B, Cv, P) result and the
    (B, N) float32 usage (an empty (0, 0) tensor without ``return_usage``)."""
    batch, _, entries = mem_key.shape
    value_dim, pixels = mem_val.shape[1], q_key.shape[2]
    channels = value_dim if q_val is None else 2 * value_dim
    out = torch.empty((batch, channels, pixels), dtype=mem_val.dtype, device=mem_val.device)
    usage_shape = (batch, entries) if return_usage else (0, 0)
    usage = torch.empty(usage_shape, dtype=torch.float32, device=mem_key.device)
    torch.ops.swiftcuda_triton.memory_read_family_into(
        mem_key,
        mem_val,
        q_key,
        q_val,
        n_valid,
        out,
        usage if return_usage else None,
        shrinkage,
        selection,
        affinity,
        scale,
        top_k,
        0,
    )
    return out, usage
