"""Patching an STM-style ``Memory`` module class (STM, official SwiftNet) in place.

Their models build ``self.Memory = Memory()`` in ``__init__``; replacing ``Memory.forward`` on the
class reaches the models already built as well as later ones.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from torch import Tensor

from swiftcuda.integrations._patching import (
    PatchHandle,
    find_attribute,
    import_official,
    mark_replacement,
)
from swiftcuda.nn import read_and_concat

__all__ = ["patch_memory_forward"]

_FORWARD_PARAMETERS = ("self", "m_in", "m_out", "q_in", "q_out")


def patch_memory_forward(
    family: str,
    module: ModuleType | str,
    fix: str,
    *,
    pair: bool,
    model_class: str,
    backend: str | None,
) -> PatchHandle:
    """Replace ``<module>.Memory.forward`` by the fused read.

    Args:
        family: the project's name for messages.
        module: the official module, or its dotted name to import.
        fix: what to do when it is missing.
        pair: return ``(readout, None)`` as STM's forward returns a pair; else the readout alone.
        model_class: a class the official module also defines ("STM"), checked so that another
            project's module of the same name is refused.
        backend: op backend.
    """
    if isinstance(module, str):
        module = import_official(family, module, fix)
    find_attribute(family, module, model_class, None, fix)
    memory = find_attribute(family, module, "Memory", None, fix)
    original = find_attribute(family, module, "Memory.forward", _FORWARD_PARAMETERS, fix)

    def forward(self: Any, m_in: Tensor, m_out: Tensor, q_in: Tensor, q_out: Tensor) -> Any:
        readout = read_and_concat(m_in, m_out, q_in, q_out, backend=backend)
        return (readout, None) if pair else readout

    handle = PatchHandle(family)
    handle.replace(memory, "forward", mark_replacement(forward, family, original))
    return handle
