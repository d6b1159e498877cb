"""The "cpu" and "cuda" backends: the C++ extension's ops (``torch.ops.swiftcuda``).

One module serves both: the dispatcher picks the CPU (OpenMP) or CUDA kernel from the tensors'
device. Signatures and semantics are those of :mod:`swiftcuda.ops.reference`; arguments arrive
already checked by :mod:`swiftcuda.ops`. ``frame_variation`` has no compiled kernel and runs the
reference (a few elementwise passes and two sums).
"""

from __future__ import annotations

import torch
from torch import Tensor

from swiftcuda import _extension
from swiftcuda.ops import reference

frame_variation = reference.frame_variation


def unavailable_reason(device_type: str) -> str | None:
    """Why the extension cannot run ops on ``device_type`` here, or None when it can."""
    found = _extension.status()
    if not found.loaded:
        return found.error
    if device_type == "cpu":
        return None
    if device_type != "cuda":
        return f"the extension has no kernels for {device_type} tensors"
    if not found.cuda:
        return "the extension was built without the CUDA kernels (no CUDA toolkit at build time)"
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        capability = 10 * major + minor
        # Machine code runs on the same major version at an equal or higher minor; PTX JIT-compiles
        # on anything at least as new.
        runs = any(a // 10 == major and a <= capability for a in found.cuda_archs)
        runs = runs or any(a <= capability for a in found.ptx_archs)
        if not runs:
            return (
                f"the CUDA kernels were compiled for sm_{found.cuda_archs} but this GPU is sm_{capability} "
                "(rebuild with SWIFTCUDA_CUDA_ARCHS)"
            )
    return None


def memory_read(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor,
    n_valid: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """See :func:`swiftcuda.ops.reference.memory_read`."""
    if out is None:
        return torch.ops.swiftcuda.memory_read(mem_key, mem_val, q_key, q_val, n_valid)
    torch.ops.swiftcuda.memory_read.into(mem_key, mem_val, q_key, q_val, n_valid, out)
    return out


def memory_read_family(
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
    """See :func:`swiftcuda.ops.reference.memory_read` (its options); the reference runs where the
    extension has no kernel for them on the tensors' device."""
    family = "swiftcuda::memory_read_family"
    if not torch._C._dispatch_has_kernel_for_dispatch_key(family, mem_key.device.type.upper()):
        return reference.memory_read(
            mem_key, mem_val, q_key, q_val, n_valid, out, affinity=affinity, scale=scale, shrinkage=shrinkage,
            selection=selection, top_k=top_k, return_usage=return_usage,
        )
    options = (shrinkage, selection, affinity, None if scale is None else float(scale), top_k)
    if out is None:
        out, usage = torch.ops.swiftcuda.memory_read_family(mem_key, mem_val, q_key, q_val, n_valid, *options, return_usage)
    else:
        usage = mem_key.new_empty(mem_key.shape[::2], dtype=torch.float32) if return_usage else None
        torch.ops.swiftcuda.memory_read_family.into(mem_key, mem_val, q_key, q_val, n_valid, *options, out, usage)
    return (out, usage) if return_usage else out


def memory_update(
    mem_key: Tensor, mem_val: Tensor, new_key: Tensor, new_val: Tensor, beta: float = 0.1
) -> tuple[Tensor, Tensor]:
    """See :func:`swiftcuda.ops.reference.memory_update`."""
    keys, values = torch.ops.swiftcuda.memory_update(mem_key, mem_val, new_key, new_val, float(beta))
    return keys, values


def memory_update_(
    key_buf: Tensor, val_buf: Tensor, n_valid: Tensor, new_key: Tensor, new_val: Tensor, beta: float = 0.1
) -> None:
    """See :func:`swiftcuda.ops.reference.memory_update_`."""
    torch.ops.swiftcuda.memory_update_(key_buf, val_buf, n_valid, new_key, new_val, float(beta))


def rsp(probs: Tensor, factor: int = 16) -> tuple[Tensor, Tensor]:
    """See :func:`swiftcuda.ops.reference.rsp`."""
    own, others = torch.ops.swiftcuda.rsp(probs, int(factor))
    return own, others


def soft_aggregate(object_probs: Tensor) -> Tensor:
    """See :func:`swiftcuda.ops.reference.soft_aggregate` (one fused pass: no log, no softmax)."""
    return torch.ops.swiftcuda.soft_aggregate(object_probs)
