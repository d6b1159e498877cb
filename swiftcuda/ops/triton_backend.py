"""The "triton" backend: the fused Triton kernels behind the op contracts of :mod:`swiftcuda.ops`.

Each function has the signature and semantics of its namesake in :mod:`swiftcuda.ops.reference`
(arguments arrive checked) and calls a ``torch.ops.swiftcuda.*_triton`` op (see
:mod:`swiftcuda.ops._triton_ops`). It runs on CUDA tensors, and on CPU tensors when
``TRITON_INTERPRET=1`` was set before triton was imported (the interpreter, for tests).
Nothing here reads a tensor's values on the host: the in-place update and the read take their
valid lengths from device tensors.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

# Importing the kernels needs triton: without it this module fails to import and the backend
# table reports the backend unavailable with the import error.
from swiftcuda.ops import _triton_launch, _triton_ops  # noqa: F401  (registers the ops)
from swiftcuda.ops._triton_compat import interpreter_numpy_conflict

__all__ = [
    "frame_variation",
    "memory_read",
    "memory_update",
    "memory_update_",
    "rsp",
    "soft_aggregate",
    "unavailable_reason",
]


def unavailable_reason(device_type: str) -> str | None:
    """Why the Triton kernels cannot run on ``device_type`` tensors here, or None when they can."""
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device is available"
        return None
    if device_type == "cpu":
        if _triton_launch.INTERPRETED:
            return interpreter_numpy_conflict()
        if os.environ.get("TRITON_INTERPRET") == "1":
            return "TRITON_INTERPRET=1 was set after triton was imported: set it before importing swiftcuda"
        return "Triton kernels run on CPU tensors only under the interpreter (set TRITON_INTERPRET=1)"
    return f"Triton kernels do not run on {device_type} tensors"


def memory_read(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor,
    n_valid: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """(B, 2Cv, P) ``[mem_val softmax_N(mem_key^T q_key / sqrt(Ck)), q_val]``; see the reference."""
    if out is None:
        batch, value_dim, pixels = q_val.shape
        out = torch.empty((batch, 2 * value_dim, pixels), dtype=q_val.dtype, device=q_val.device)
    torch.ops.swiftcuda.memory_read_triton(mem_key, mem_val, q_key, q_val, n_valid, out)
    return out


def memory_update(
    mem_key: Tensor, mem_val: Tensor, new_key: Tensor, new_val: Tensor, beta: float = 0.1
) -> tuple[Tensor, Tensor]:
    """(B, Ck, N + k) keys and (B, Cv, N + k) values: the memory, then the k most novel pixels."""
    return torch.ops.swiftcuda.memory_update_triton(mem_key, mem_val, new_key, new_val, beta)


def memory_update_(
    key_buf: Tensor, val_buf: Tensor, n_valid: Tensor, new_key: Tensor, new_val: Tensor, beta: float = 0.1
) -> None:
    """In place on (B, C, capacity) buffers from column ``n_valid[b]``; advances ``n_valid``."""
    torch.ops.swiftcuda.memory_update_inplace_triton(key_buf, val_buf, n_valid, new_key, new_val, beta)


def rsp(probs: Tensor, factor: int = 16) -> tuple[Tensor, Tensor]:
    """(O, H, W) -> own, others: (O, factor**2, H / factor, W / factor)."""
    return torch.ops.swiftcuda.rsp_triton(probs, factor)


def soft_aggregate(object_probs: Tensor) -> Tensor:
    """(O, H, W) -> (O + 1, H, W) float32 probabilities, background first."""
    return torch.ops.swiftcuda.soft_aggregate_triton(object_probs)


def frame_variation(
    frame: Tensor,
    previous_frame: Tensor,
    object_probs: Tensor,
    previous_probs: Tensor,
    frame_threshold: float,
    mask_threshold: float,
) -> Tensor:
    """(2,) float32 [varied pixels of the objects' region, pixels of the region], on the device."""
    return torch.ops.swiftcuda.frame_variation_triton(
        frame, previous_frame, object_probs, previous_probs, float(frame_threshold), float(mask_threshold)
    )
