"""STM (Oh et al., ICCV 2019) on swiftcuda's fused read.

Two lines in STM's ``eval_DAVIS.py`` (run from the STM repository's root, where its ``model.py``
is the module ``model``)::

    import swiftcuda.integrations.stm as st
    st.patch()

:func:`patch` replaces ``model.Memory.forward``: the dot-product softmax read and the
concatenation with the query values. STM's forward returns ``(readout, attention)`` and STM
unpacks the pair; the patched forward returns ``(readout, None)``, since the fused read never
builds the attention (STM uses it for nothing but visualisation). To swap the module instead of
patching the class, use :class:`swiftcuda.nn.STMMemoryRead`.
"""

from __future__ import annotations

from types import ModuleType

from swiftcuda.integrations._memory_module import patch_memory_forward
from swiftcuda.integrations._patching import PatchHandle

__all__ = ["patch"]

FAMILY = "STM"
MODULE = "model"
_FIX = "put the STM repository on PYTHONPATH, or run from its root (its model.py is the module 'model')"


def patch(module: ModuleType | str = MODULE, *, backend: str | None = None) -> PatchHandle:
    """Route STM's memory read through :func:`swiftcuda.ops.memory_read`.

    Args:
        module: STM's ``model`` module, or the name to import it by (STM's file is ``model.py``, a
            name other projects use too: pass the module itself when in doubt).
        backend: op backend (None: the best available on the memory's device).

    Returns:
        A :class:`~swiftcuda.integrations.PatchHandle`; ``undo()`` restores STM's forward.

    Raises:
        IntegrationError: the module is not importable or is not STM's (no ``STM`` and ``Memory``).
    """
    return patch_memory_forward(FAMILY, module, _FIX, pair=True, model_class="STM", backend=backend)
