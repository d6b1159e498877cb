"""The "triton" backend: the fused Triton kernels, registered as ``torch.ops.swiftcuda_triton.*``.

Importing this module registers the ops (see :mod:`swiftcuda.ops._triton_ops`), each under its
schema of :mod:`swiftcuda.ops.schema`; the backend table calls them. They run on CUDA tensors, and
on CPU tensors when ``TRITON_INTERPRET=1`` was set before triton was imported (the interpreter, for
tests). Nothing here reads a tensor's values on the host: the in-place update and the read take
their valid lengths from device tensors.
"""

from __future__ import annotations

import os

import torch

# Importing the kernels needs triton: without it this module fails to import and the backend
# table reports the backend unavailable with the import error.
from swiftcuda.ops import _triton_launch, _triton_ops  # noqa: F401  (registers the ops)
from swiftcuda.ops._triton_compat import interpreter_numpy_conflict

__all__ = ["unavailable_reason"]


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
