"""The official SwiftNet release (Wang et al., CVPR 2021) on swiftcuda's fused read.

Two lines in the official ``eval.py`` (run from that repository's root, where ``swiftnet.py`` is
the module ``swiftnet``)::

    import swiftcuda.integrations.swiftnet as sw
    sw.patch()

:func:`patch` replaces ``swiftnet.Memory.forward``, the dot-product softmax read and the
concatenation with the query values. swiftcuda's own engine (:mod:`swiftcuda.inference`) needs no
patch; this is for code that runs the official model. To swap the module instead of patching the
class, use :class:`swiftcuda.nn.MemoryRead`.
"""

from __future__ import annotations

from types import ModuleType

from swiftcuda.integrations._memory_module import patch_memory_forward
from swiftcuda.integrations._patching import PatchHandle

__all__ = ["patch"]

FAMILY = "SwiftNet"
MODULE = "swiftnet"
_FIX = "put the official SwiftNet repository on PYTHONPATH, or run from its root"


def patch(module: ModuleType | str = MODULE, *, backend: str | None = None) -> PatchHandle:
    """Route the official SwiftNet memory read through :func:`swiftcuda.ops.memory_read`.

    Args:
        module: the official ``swiftnet`` module, or the name to import it by.
        backend: op backend (None: the best available on the memory's device).

    Returns:
        A :class:`~swiftcuda.integrations.PatchHandle`; ``undo()`` restores the official forward.

    Raises:
        IntegrationError: the module is not importable or is not the official SwiftNet's (no
            ``SwiftNet`` and ``Memory``).
    """
    return patch_memory_forward(FAMILY, module, _FIX, pair=False, model_class="SwiftNet", backend=backend)
