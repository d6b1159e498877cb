"""``wrap_triton`` that also accepts the Triton interpreter's kernels, whatever the torch release.

Under ``TRITON_INTERPRET=1``, Triton wraps every ``@triton.jit`` function as an
``InterpretedFunction``. torch 2.14 accepts those in :func:`torch.library.wrap_triton`; torch 2.11
(with Triton 3.6) rejects them ("wrap_triton only works on functions annotated with triton.jit").
Interpreted launches never need tracing here (``swiftcuda.ops._triton_ops`` hands them to opaque
custom ops), so the raw kernel is what such a launch must run. Compiled kernels always go through
torch's ``wrap_triton``, so ``torch.compile`` and CUDA graphs still see them.
"""

from __future__ import annotations

from typing import Any

from torch.library import wrap_triton as _torch_wrap_triton

__all__ = ["is_interpreted_kernel", "wrap_triton"]


def is_interpreted_kernel(kernel: Any) -> bool:
    """Whether ``kernel`` is a Triton interpreter function (``TRITON_INTERPRET=1``)."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # a Triton without the interpreter class
        return False
    return isinstance(kernel, InterpretedFunction)


def wrap_triton(kernel: Any) -> Any:
    """``torch.library.wrap_triton(kernel)``, or ``kernel`` itself when torch rejects an
    interpreted kernel.

    Args:
        kernel: a ``@triton.jit`` function (a ``JITFunction``, or an ``InterpretedFunction`` under
            the interpreter).

    Returns:
        Something to index with a grid and call, as ``wrap_triton``'s result is.

    Raises:
        RuntimeError: torch rejected a kernel that is not an interpreted one.
    """
    try:
        return _torch_wrap_triton(kernel)
    except RuntimeError:
        if is_interpreted_kernel(kernel):
            return kernel
        raise
