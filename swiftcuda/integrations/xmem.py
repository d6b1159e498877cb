"""XMem (Cheng & Schwing, ECCV 2022) on swiftcuda's fused read.

Two lines in XMem's ``eval.py`` (run from the XMem repository's root, so that its ``inference``
and ``model`` packages import)::

    import swiftcuda.integrations.xmem as sx
    sx.patch()

:func:`patch` replaces two methods of ``inference.memory_manager.MemoryManager``:

- ``match_memory``: every object group's read (a long-term suffix, when long-term memory is
  engaged, followed by a working-memory suffix; the first group reads all of both), the top-k
  anisotropic L2 softmax and the readout, and the usage counts of the first group that decide
  which working-memory entries are consolidated into long-term memory;
- ``consolidation``: the full-softmax read that turns the most used candidates into prototypes
  (their values and shrinkage).

Both go through :func:`swiftcuda.ops.memory_read`, which never builds the entries x pixels
affinity. The objects of a group share their keys, so their values are read as the channels of one
read. Everything else (memory insertion, the long-term memory's pruning, the network) is XMem's.
``model.memory_util`` is checked to define the similarity and softmax being replaced; a
``top_k`` above the fused read's limit keeps XMem's own read, with a warning.
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

FAMILY = "XMem"
MANAGER_MODULE = "inference.memory_manager"
UTIL_MODULE = "model.memory_util"
_FIX = "put the XMem repository on PYTHONPATH, or run from its root"

_MATCH_PARAMETERS = ("self", "query_key", "selection")
_CONSOLIDATION_PARAMETERS = (
    "self",
    "candidate_key",
    "candidate_shrinkage",
    "candidate_selection",
    "usage",
    "candidate_value",
)
_STORE_ATTRIBUTES = ("key", "value", "shrinkage", "size", "num_groups", "get_v_size", "engaged", "update_usage")


def patch(*, backend: str | None = None) -> PatchHandle:
    """Route XMem's memory reads through :func:`swiftcuda.ops.memory_read`.

    Args:
        backend: op backend for every read (None: the best available on the memory's device).

    Returns:
        A :class:`~swiftcuda.integrations.PatchHandle`; ``undo()`` restores XMem's methods.

    Raises:
        IntegrationError: XMem's modules are not importable or are not the expected ones.
    """
    manager_module = import_official(FAMILY, MANAGER_MODULE, _FIX)
    util_module = import_official(FAMILY, UTIL_MODULE, _FIX)
    find_attribute(FAMILY, util_module, "get_similarity", ("mk", "ms", "qk", "qe"), _FIX)
    find_attribute(FAMILY, util_module, "do_softmax", ("similarity", "top_k", "inplace", "return_usage"), _FIX)
    for name in _STORE_ATTRIBUTES:
        find_attribute(FAMILY, manager_module, f"KeyValueMemoryStore.{name}", None, _FIX)
    manager = find_attribute(FAMILY, manager_module, "MemoryManager", None, _FIX)
    original_match = find_attribute(FAMILY, manager_module, "MemoryManager.match_memory", _MATCH_PARAMETERS, _FIX)
    original_consolidation = find_attribute(
        FAMILY, manager_module, "MemoryManager.consolidation", _CONSOLIDATION_PARAMETERS, _FIX
    )

    def match_memory(self: Any, query_key: Tensor, selection: Tensor | None) -> Tensor:
        if self.top_k is not None and self.top_k > MAX_TOP_K:
            warnings.warn(
                f"XMem's top_k={self.top_k} is above the fused read's {MAX_TOP_K}: XMem's own read is used",
                stacklevel=2,
            )
            return original_match(self, query_key, selection)
        return match_groups(self, query_key, selection, backend=backend)

    def consolidation(
        self: Any,
        candidate_key: Tensor,
        candidate_shrinkage: Tensor | None,
        candidate_selection: Tensor | None,
        usage: Tensor,
        candidate_value: list[Tensor | None],
    ) -> tuple[Tensor, list[Tensor | None], Tensor | None]:
        return consolidate(
            self.num_prototypes,
            candidate_key,
            candidate_shrinkage,
            candidate_selection,
            usage,
            candidate_value,
            backend=backend,
        )

    handle = PatchHandle(FAMILY)
    handle.replace(manager, "match_memory", mark_replacement(match_memory, FAMILY, original_match))
    handle.replace(manager, "consolidation", mark_replacement(consolidation, FAMILY, original_consolidation))
    return handle


def _suffix(tensor: Tensor, length: int) -> Tensor:
    """The last ``length`` entries along the last axis (``length`` may be 0)."""
    return tensor[..., tensor.shape[-1] - length :]


def match_groups(manager: Any, query_key: Tensor, selection: Tensor | None, *, backend: str | None = None) -> Tensor:
    """XMem's ``MemoryManager.match_memory`` on the fused read.

    Args:
        manager: an XMem ``MemoryManager`` (its ``work_mem``, ``long_mem``, ``top_k``,
            ``enable_long_term``, ``enable_long_term_usage``).
        query_key: (1, Ck, H, W) query key.
        selection: (1, Ck, H, W) query selection, or None.
        backend: op backend.

    Returns:
        (objects, Cv, H, W) readouts, object groups in order; the working (and, when XMem counts
        it, long-term) memory's usage is updated from the first group's weights.
    """
    height, width = query_key.shape[-2:]
    q_key = query_key.flatten(start_dim=2)
    q_sel = selection.flatten(start_dim=2) if selection is not None else None
    work = manager.work_mem
    long = manager.long_mem if manager.enable_long_term and manager.long_mem.engaged() else None
    count_usage = bool(manager.enable_long_term)

    readouts = []
    for group in range(work.num_groups):
        # (store, suffix length) pieces of this group's memory, long-term first; the first group
        # holds every key of both stores.
        pieces = []
        if long is not None and group < long.num_groups:
            pieces.append((long, long.get_v_size(group)))
        pieces.append((work, work.size if group == 0 else work.get_v_size(group)))
        keys = _cat([_suffix(store.key, n) for store, n in pieces])
        shrinkage = None
        if all(store.shrinkage is not None for store, _ in pieces):
            shrinkage = _cat([_suffix(store.shrinkage, n) for store, n in pieces])
        group_values = _cat([store.value[group] for store, _ in pieces])
        objects, value_dim = group_values.shape[:2]
        want_usage = count_usage and group == 0
        readout, usage = fused_read(
            keys,
            objects_as_channels(group_values),
            q_key,
            shrinkage=shrinkage,
            selection=q_sel,
            top_k=manager.top_k,
            usage=want_usage,
            backend=backend,
        )
        readouts.append(readout.view(objects, value_dim, height * width))
        if want_usage:
            _record_usage(manager, work, long, usage)

    out = torch.cat(readouts, 0)
    return out.view(out.shape[0], out.shape[1], height, width)


def _record_usage(manager: Any, work: Any, long: Any, usage: Tensor) -> None:
    """Add the first group's per-entry weights to the stores' use counts, as XMem splits them."""
    if long is None:
        work.update_usage(usage.flatten())
        return
    work.update_usage(usage[:, long.size :].flatten())
    if manager.enable_long_term_usage:
        long.update_usage(usage[:, : long.size].flatten())


def consolidate(
    num_prototypes: int,
    candidate_key: Tensor,
    candidate_shrinkage: Tensor | None,
    candidate_selection: Tensor | None,
    usage: Tensor,
    candidate_value: list[Tensor | None],
    *,
    backend: str | None = None,
) -> tuple[Tensor, list[Tensor | None], Tensor | None]:
    """XMem's ``MemoryManager.consolidation`` (memory potentiation) on the fused read.

    The ``num_prototypes`` most used candidates become prototypes; each reads the candidates of
    every group whose values reach back to it (a full softmax), and the first group's read also
    carries the shrinkage as one more value channel.

    Args:
        num_prototypes: how many prototypes.
        candidate_key: (1, Ck, N) candidate keys.
        candidate_shrinkage: (1, 1, N) or None.
        candidate_selection: (1, Ck, N) or None.
        usage: (1, 1, N) normalised usage of the candidates.
        candidate_value: per group, (objects, Cv, n) values of the last n candidates, or None.
        backend: op backend.

    Returns:
        prototype keys (1, Ck, K), per group (objects, Cv, K_g) values or None, shrinkage (1, 1, K).
    """
    num_candidates = candidate_key.shape[-1]
    _, chosen = torch.topk(usage, k=num_prototypes, dim=-1, sorted=True)
    chosen = chosen.flatten()
    prototype_key = candidate_key[:, :, chosen]
    prototype_selection = candidate_selection[:, :, chosen] if candidate_selection is not None else None

    prototype_value: list[Tensor | None] = []
    prototype_shrinkage = None
    for group, values in enumerate(candidate_value):
        if values is None:
            prototype_value.append(None)
            continue
        length = values.shape[-1]
        reaches = chosen >= num_candidates - length
        if not bool(reaches.any()):
            prototype_value.append(None)
            continue
        objects, value_dim = values.shape[:2]
        channels = objects_as_channels(values)
        carry_shrinkage = group == 0 and candidate_shrinkage is not None and length == num_candidates
        if carry_shrinkage:
            channels = torch.cat([channels, candidate_shrinkage], 1)
        readout, _ = fused_read(
            _suffix(candidate_key, length),
            channels,
            prototype_key[:, :, reaches],
            shrinkage=_suffix(candidate_shrinkage, length) if candidate_shrinkage is not None else None,
            selection=prototype_selection[:, :, reaches] if prototype_selection is not None else None,
            backend=backend,
        )
        if carry_shrinkage:
            prototype_shrinkage = readout[:, objects * value_dim :]
            readout = readout[:, : objects * value_dim]
        prototype_value.append(readout.reshape(objects, value_dim, -1))

    if candidate_shrinkage is not None and prototype_shrinkage is None:
        # Only when the first group does not span the candidates (XMem itself requires it does).
        prototype_shrinkage, _ = fused_read(
            candidate_key,
            candidate_shrinkage,
            prototype_key,
            shrinkage=candidate_shrinkage,
            selection=prototype_selection,
            backend=backend,
        )
    return prototype_key, prototype_value, prototype_shrinkage


def _cat(tensors: list[Tensor]) -> Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, -1)
