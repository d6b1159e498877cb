"""Where a Triton or torch release differs from the one CI installs: what the project bridges.

``wrap_triton`` that also accepts the Triton interpreter's kernels, whatever the torch release:

Under ``TRITON_INTERPRET=1``, Triton wraps every ``@triton.jit`` function as an
``InterpretedFunction``. torch 2.14 accepts those in :func:`torch.library.wrap_triton`; torch 2.11
(with Triton 3.6) rejects them ("wrap_triton only works on functions annotated with triton.jit").
Interpreted launches never need tracing here (``swiftcuda.ops._triton_ops`` hands them to opaque
custom ops), so the raw kernel is what such a launch must run. Compiled kernels always go through
torch's ``wrap_triton``, so ``torch.compile`` and CUDA graphs still see them.

:func:`interpreter_numpy_conflict`: Triton's interpreter before 3.7 turns a loop bound into a
Python int with ``int()`` of a one-element array, which NumPy 2.4 rejects
(triton-lang/triton#9171); every kernel with a runtime loop bound then fails under
``TRITON_INTERPRET=1``. Compiled kernels (a GPU) are not affected.
"""

from __future__ import annotations

from typing import Any

import numpy
from torch.library import wrap_triton as _torch_wrap_triton

__all__ = ["interpreter_numpy_conflict", "is_interpreted_kernel", "wrap_triton"]


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


# The first Triton release whose interpreter squeezes before int() (triton-lang/triton#9172).
_INTERPRETER_FIXED_TRITON = (3, 7)
# The first NumPy release that raises on int() of an array with ndim > 0.
_STRICT_NUMPY = (2, 4)


def _release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "3.6.0" or "2.4.0rc1"."""
    major, minor = (version.split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def interpreter_numpy_conflict(triton_version: str | None = None, numpy_version: str | None = None) -> str | None:
    """Why Triton's interpreter cannot run these kernels with this NumPy, or None when it can.

    Args:
        triton_version: the Triton release to judge; the installed one when None.
        numpy_version: the NumPy release to judge; the installed one when None.

    Returns:
        A one-line reason that names the fix, or None.
    """
    if triton_version is None:
        import triton

        triton_version = triton.__version__
    numpy_version = numpy.__version__ if numpy_version is None else numpy_version
    if _release(triton_version) >= _INTERPRETER_FIXED_TRITON or _release(numpy_version) < _STRICT_NUMPY:
        return None
    return (
        f"Triton {triton_version}'s interpreter fails with NumPy {numpy_version} (int() of a one-element "
        "array, triton-lang/triton#9171): pip install 'numpy<2.4' or Triton >= 3.7 to run the Triton "
        "kernels on the CPU"
    )
