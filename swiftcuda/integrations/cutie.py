"""Cutie (Cheng et al., CVPR 2024) on swiftcuda's fused read.

Two lines in Cutie's evaluation script (with the ``cutie`` package importable: installed, or the
repository's root on PYTHONPATH)::

    import swiftcuda.integrations.cutie as sc
    sc.patch()

:func:`patch` replaces two methods of ``cutie.inference.memory_manager.MemoryManager``:

- ``read``: per bucket (objects that entered together and share their keys), the top-k
  anisotropic L2 softmax over long-term followed by working memory and the readout of every
  object's values in one fused read, with the usage counts that decide consolidation; the
  readouts then go through Cutie's own pixel fusion and object transformer, chunk by chunk, as
  Cutie does;
- ``consolidation``: the full-softmax read of the prototypes' values and shrinkage.

``cutie.model.utils.memory_utils`` is checked to define the similarity and softmax being
replaced; a ``top_k`` above the fused read's limit keeps Cutie's own read, with a warning.
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
from swiftcuda.integrations._read import MAX_TOP_K, fused_read

__all__ = ["patch"]

FAMILY = "Cutie"
MANAGER_MODULE = "cutie.inference.memory_manager"
UTIL_MODULE = "cutie.model.utils.memory_utils"
_FIX = "install Cutie (pip install -e . in its repository) or put its repository's root on PYTHONPATH"

_READ_PARAMETERS = ("self", "pix_feat", "query_key", "selection", "last_mask", "network")
_CONSOLIDATION_PARAMETERS = (
    "self",
    "candidate_key",
    "candidate_shrinkage",
    "candidate_selection",
    "candidate_value",
    "usage",
)
_HELPERS = {
    "_get_sensory_by_ids": ("self", "obj_ids"),
    "_get_mask_by_ids": ("self", "mask", "obj_ids"),
    "_get_visual_values_by_ids": ("self", "obj_ids"),
    "_get_object_mem_by_ids": ("self", "obj_ids"),
}
_STORE_ATTRIBUTES = ("key", "shrinkage", "size", "engaged", "update_bucket_usage")


def patch(*, backend: str | None = None) -> PatchHandle:
    """Route Cutie's memory reads through :func:`swiftcuda.ops.memory_read`.

    Args:
        backend: op backend for every read (None: the best available on the memory's device).

    Returns:
        A :class:`~swiftcuda.integrations.PatchHandle`; ``undo()`` restores Cutie's methods.

    Raises:
        IntegrationError: Cutie's modules are not importable or are not the expected ones.
    """
    manager_module = import_official(FAMILY, MANAGER_MODULE, _FIX)
    util_module = import_official(FAMILY, UTIL_MODULE, _FIX)
    find_attribute(FAMILY, util_module, "get_similarity", ("mk", "ms", "qk", "qe"), _FIX)
    find_attribute(FAMILY, util_module, "do_softmax", ("similarity", "top_k", "inplace", "return_usage"), _FIX)
    for name in _STORE_ATTRIBUTES:
        find_attribute(FAMILY, manager_module, f"KeyValueMemoryStore.{name}", None, _FIX)
    for name, parameters in _HELPERS.items():
        find_attribute(FAMILY, manager_module, f"MemoryManager.{name}", parameters, _FIX)
    manager = find_attribute(FAMILY, manager_module, "MemoryManager", None, _FIX)
    original_read = find_attribute(FAMILY, manager_module, "MemoryManager.read", _READ_PARAMETERS, _FIX)
    original_consolidation = find_attribute(
        FAMILY, manager_module, "MemoryManager.consolidation", _CONSOLIDATION_PARAMETERS, _FIX
    )

    def read(
        self: Any, pix_feat: Tensor, query_key: Tensor, selection: Tensor, last_mask: Tensor, network: Any
    ) -> dict[int, Tensor]:
        if self.top_k is not None and self.top_k > MAX_TOP_K:
            warnings.warn(
                f"Cutie's top_k={self.top_k} is above the fused read's {MAX_TOP_K}: Cutie's own read is used",
                stacklevel=2,
            )
            return original_read(self, pix_feat, query_key, selection, last_mask, network)
        return read_buckets(self, pix_feat, query_key, selection, last_mask, network, backend=backend)

    def consolidation(
        self: Any,
        candidate_key: Tensor,
        candidate_shrinkage: Tensor,
        candidate_selection: Tensor | None,
        candidate_value: dict[int, Tensor],
        usage: Tensor,
    ) -> tuple[Tensor, dict[int, Tensor], Tensor]:
        return consolidate(
            self.num_prototypes,
            candidate_key,
            candidate_shrinkage,
            candidate_selection,
            candidate_value,
            usage,
            backend=backend,
        )

    handle = PatchHandle(FAMILY)
    handle.replace(manager, "read", mark_replacement(read, FAMILY, original_read))
    handle.replace(manager, "consolidation", mark_replacement(consolidation, FAMILY, original_consolidation))
    return handle


def bucket_readout(
    manager: Any, bucket_id: int, query_key: Tensor, selection: Tensor | None, *, backend: str | None = None
) -> Tensor:
    """One bucket's visual readout for all its objects, recording the usage as Cutie does.

    Args:
        manager: a Cutie ``MemoryManager``.
        bucket_id: the bucket read.
        query_key: (bs, Ck, P) flattened query key.
        selection: (bs, Ck, P) flattened selection, or None.
        backend: op backend.

    Returns:
        (bs, objects, Cv, P): the readout of each of the bucket's objects, in the bucket's order.
    """
    work = manager.work_mem
    with_long = manager.use_long_term and manager.long_mem.engaged(bucket_id)
    stores = [manager.long_mem, work] if with_long else [work]
    keys = torch.cat([store.key[bucket_id] for store in stores], -1)
    shrinkage = torch.cat([store.shrinkage[bucket_id] for store in stores], -1)
    values = manager._get_visual_values_by_ids(manager.work_mem.buckets[bucket_id])  # (bs, objects, Cv, N)
    batch, objects, value_dim, entries = values.shape
    readout, usage = fused_read(
        keys,
        values.reshape(batch, objects * value_dim, entries),
        query_key,
        shrinkage=shrinkage,
        selection=selection,
        top_k=manager.top_k,
        usage=bool(manager.use_long_term),
        backend=backend,
    )
    if usage is not None:
        if with_long:
            long_size = manager.long_mem.size(bucket_id)
            work.update_bucket_usage(bucket_id, usage[:, long_size:])
            if manager.count_long_term_usage:
                manager.long_mem.update_bucket_usage(bucket_id, usage[:, :long_size])
        else:
            work.update_bucket_usage(bucket_id, usage)
    return readout.view(batch, objects, value_dim, -1)


def read_buckets(
    manager: Any,
    pix_feat: Tensor,
    query_key: Tensor,
    selection: Tensor,
    last_mask: Tensor,
    network: Any,
    *,
    backend: str | None = None,
) -> dict[int, Tensor]:
    """Cutie's ``MemoryManager.read`` with the fused read per bucket.

    Args:
        manager: a Cutie ``MemoryManager``.
        pix_feat: (bs, C, H, W) pixel features.
        query_key: (bs, Ck, H, W) query key.
        selection: (bs, Ck, H, W) selection.
        last_mask: (bs, objects, H, W) last mask at stride 16.
        network: the Cutie network (its ``pixel_fusion`` and ``readout_query``).
        backend: op backend.

    Returns:
        {object id: (bs, C, H, W) memory readout}, as Cutie's ``read`` returns.
    """
    height, width = pix_feat.shape[-2:]
    q_key = query_key.flatten(start_dim=2)
    q_sel = selection.flatten(start_dim=2) if selection is not None else None
    readouts: dict[int, Tensor] = {}
    for bucket_id, bucket in manager.work_mem.buckets.items():
        visual = bucket_readout(manager, bucket_id, q_key, q_sel, backend=backend)
        visual = visual.view(*visual.shape[:3], height, width)
        step = len(bucket) if manager.chunk_size < 1 else manager.chunk_size
        for start in range(0, len(bucket), step):
            objects = bucket[start : start + step]
            sensory = manager._get_sensory_by_ids(objects)
            chunk_mask = manager._get_mask_by_ids(last_mask, objects)
            pixel_readout = network.pixel_fusion(pix_feat, visual[:, start : start + len(objects)], sensory, chunk_mask)
            object_memory = manager._get_object_mem_by_ids(objects)
            if object_memory is not None:
                object_memory = object_memory.unsqueeze(2)
            memory_readout, aux = network.readout_query(pixel_readout, object_memory)
            for index, obj in enumerate(objects):
                readouts[obj] = memory_readout[:, index]
            if manager.save_aux:
                manager.aux = {
                    "sensory": sensory,
                    "pixel_readout": pixel_readout,
                    "q_logits": aux["logits"] if aux else None,
                    "q_weights": aux["q_weights"] if aux else None,
                    "p_weights": aux["p_weights"] if aux else None,
                    "attn_mask": aux["attn_mask"].float() if aux else None,
                }
    return readouts


def consolidate(
    num_prototypes: int,
    candidate_key: Tensor,
    candidate_shrinkage: Tensor,
    candidate_selection: Tensor | None,
    candidate_value: dict[int, Tensor],
    usage: Tensor,
    *,
    backend: str | None = None,
) -> tuple[Tensor, dict[int, Tensor], Tensor]:
    """Cutie's ``MemoryManager.consolidation`` on the fused read.

    Each batch item's ``num_prototypes`` most used candidates read every candidate (full softmax);
    the objects' values and the shrinkage are the channels of one read.

    Args:
        num_prototypes: how many prototypes.
        candidate_key: (bs, Ck, N); candidate_shrinkage: (bs, 1, N); candidate_selection: (bs, Ck, N).
        candidate_value: {object id: (bs, Cv, N)}.
        usage: (bs, N) normalised usage.
        backend: op backend.

    Returns:
        prototype keys (bs, Ck, K), {object id: (bs, Cv, K)}, shrinkage (bs, 1, K).
    """
    chosen = torch.topk(usage, k=num_prototypes, dim=-1, sorted=True).indices  # (bs, K)
    prototype_key = torch.gather(candidate_key, 2, chosen[:, None, :].expand(-1, candidate_key.shape[1], -1))
    prototype_selection = None
    if candidate_selection is not None:
        prototype_selection = torch.gather(
            candidate_selection, 2, chosen[:, None, :].expand(-1, candidate_selection.shape[1], -1)
        )
    object_ids = list(candidate_value)
    channels = torch.cat([candidate_value[obj] for obj in object_ids] + [candidate_shrinkage], 1)
    readout, _ = fused_read(
        candidate_key,
        channels,
        prototype_key,
        shrinkage=candidate_shrinkage,
        selection=prototype_selection,
        backend=backend,
    )
    prototype_value = {}
    start = 0
    for obj in object_ids:
        width = candidate_value[obj].shape[1]
        prototype_value[obj] = readout[:, start : start + width]
        start += width
    return prototype_key, prototype_value, readout[:, start:]
