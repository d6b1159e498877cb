"""The one call the integrations make: the family's read through :func:`swiftcuda.ops.memory_read`.

The STM-family models hand over whatever dtypes their autocast produced (half keys beside float32
shrinkage, say); the op wants one. Reads here run in the widest of the given dtypes with autocast
off, so the op's own precision contract holds (half inputs, float32 accumulation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from swiftcuda import ops
from swiftcuda.ops.reference import (
    MAX_TOP_K,  # a model configured above it keeps its own read
)

__all__ = ["MAX_TOP_K", "fused_read", "objects_as_channels"]


def objects_as_channels(values: Tensor) -> Tensor:
    """(O, Cv, N) values of objects that share one key set -> (1, O * Cv, N).

    The readout is linear in the values, so reading every object's channels under one softmax is
    the same as reading each object on its own, and the top-k is chosen once instead of O times.
    """
    return values.reshape(1, values.shape[0] * values.shape[1], values.shape[2])


def fused_read(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    *,
    shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
    top_k: int | None = None,
    usage: bool = False,
    backend: str | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The L2 read of the STM family, with the query-only term exactly when a selection is given.

    Args:
        mem_key: (B, Ck, N) memory keys.
        mem_val: (B, Cv, N) memory values.
        q_key: (B, Ck, P) query keys.
        shrinkage: optional per-entry factor, (B, N) or (B, 1, N).
        selection: optional (B, Ck, P) per-pixel channel weights.
        top_k: softmax over each query's ``top_k`` largest logits (all N when fewer), or None for all.
        usage: also return each entry's summed weight over the queries.
        backend: op backend, None for the best available.

    Returns:
        readout (B, Cv, P) in the widest input dtype, and usage (B, N) float32 or None.
    """
    tensors = [mem_key, mem_val, q_key] + [t for t in (shrinkage, selection) if t is not None]
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)

    def cast(tensor: Tensor | None) -> Tensor | None:
        return None if tensor is None else tensor.to(dtype)

    if shrinkage is not None:
        shrinkage = shrinkage.reshape(shrinkage.shape[0], shrinkage.shape[-1])
    with torch.autocast(device_type=q_key.device.type, enabled=False):
        result = ops.memory_read(
            cast(mem_key),
            cast(mem_val),
            cast(q_key),
            affinity="l2",
            shrinkage=cast(shrinkage),
            selection=cast(selection),
            top_k=top_k,
            return_usage=usage,
            backend=backend,
        )
    if usage:
        readout, entry_usage = result
        return readout, entry_usage
    return result, None
