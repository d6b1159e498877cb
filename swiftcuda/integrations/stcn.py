"""STCN (Cheng et al., NeurIPS 2021) on swiftcuda's fused read.

Two lines in STCN's ``eval_davis.py`` / ``eval_youtube.py`` / ``eval_generic.py`` (run from the
STCN repository's root, so that ``inference_memory_bank`` imports)::

    import swiftcuda.integrations.stcn as ss
    ss.patch()

:func:`patch` replaces ``inference_memory_bank.MemoryBank.match_memory``: the negative squared L2
similarity over the memory and the temporary last frame, the top-k softmax and the readout, for
all the bank's objects in one fused read (STCN's objects share one affinity). ``softmax_w_top``
and ``MemoryBank._global_matching`` are checked to be there; a ``top_k`` above the fused read's
limit keeps STCN's own read, with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from swiftcuda.integrations._patching import (
    PatchHandle,
    find_attribute,
    import_official,
    mark_replacement,
)
from swiftcuda.integrations._read import MAX_TOP_K, fused_read, objects_as_channels

__all__ = ["patch"]

FAMILY = "STCN"
BANK_MODULE = "inference_memory_bank"
_FIX = "put the STCN repository on PYTHONPATH, or run from its root"


def patch(*, backend: str | None = None) -> PatchHandle:
    """Route STCN's memory read through :func:`swiftcuda.ops.memory_read`.

    Args:
        backend: op backend (None: the best available on the memory's device).

    Returns:
        A :class:`~swiftcuda.integrations.PatchHandle`; ``undo()`` restores STCN's method.

    Raises:
        IntegrationError: ``inference_memory_bank`` is not importable or is not STCN's.
    """
    module = import_official(FAMILY, BANK_MODULE, _FIX)
    find_attribute(FAMILY, module, "softmax_w_top", ("x", "top"), _FIX)
    find_attribute(FAMILY, module, "MemoryBank._global_matching", ("self", "mk", "qk"), _FIX)
    bank = find_attribute(FAMILY, module, "MemoryBank", None, _FIX)
    original = find_attribute(FAMILY, module, "MemoryBank.match_memory", ("self", "qk"), _FIX)

    def match_memory(self: Any, qk: Tensor) -> Tensor:
        if self.top_k is not None and self.top_k > MAX_TOP_K:
            warnings.warn(
                f"STCN's top_k={self.top_k} is above the fused read's {MAX_TOP_K}: STCN's own read is used",
                stacklevel=2,
            )
            return original(self, qk)
        return match_bank(self, qk, backend=backend)

    handle = PatchHandle(FAMILY)
    handle.replace(bank, "match_memory", mark_replacement(match_memory, FAMILY, original))
    return handle


def match_bank(bank: Any, qk: Tensor, *, backend: str | None = None) -> Tensor:
    """STCN's ``MemoryBank.match_memory`` on the fused read.

    Args:
        bank: an STCN ``MemoryBank`` (``mem_k`` (1, Ck, N), ``mem_v`` (objects, Cv, N), and the
            temporary ``temp_k`` / ``temp_v`` or None; ``num_objects``, ``CV``, ``top_k``).
        qk: (1, Ck, H, W) query key.
        backend: op backend.

    Returns:
        (objects, Cv, H, W) readout.
    """
    objects = bank.num_objects
    height, width = qk.shape[-2:]
    keys, values = bank.mem_k, bank.mem_v
    if bank.temp_k is not None:
        keys = torch.cat([keys, bank.temp_k], 2)
        values = torch.cat([values, bank.temp_v], 2)
    q_key = qk.flatten(start_dim=2)
    if keys.shape[0] == 1:
        # One key set for every object: the objects' values are channels of one read.
        readout, _ = fused_read(keys, objects_as_channels(values), q_key, top_k=bank.top_k, backend=backend)
    else:
        readout, _ = fused_read(keys, values, q_key.expand(keys.shape[0], -1, -1), top_k=bank.top_k, backend=backend)
    return readout.view(objects, bank.CV, height, width)
