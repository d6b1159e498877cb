"""Minimal stand-ins for the official modules the integrations patch, built on family_maths.

Each builder returns ``{module name: module}`` with the attribute names and parameter names that
``patch()`` looks for. Their methods are the *unpatched* behaviour, written from the maths in
float64 with the weights materialised (index lists rather than slices, so they share no code path
with swiftcuda's versions). None of the official projects' code is used.
"""

from __future__ import annotations

import types

import torch
from torch import Tensor, nn

from tests.integrations import family_maths as fm

# ---------------------------------------------------------------------------------------------
# XMem: inference.memory_manager (MemoryManager, KeyValueMemoryStore) and model.memory_util


class XMemStore:
    """Keys shared by object groups, one value tensor per group covering a suffix of the keys."""

    def __init__(self, key: Tensor, shrinkage: Tensor | None, values: list[Tensor]) -> None:
        self.k, self.s, self.v = key, shrinkage, values
        length = 0 if key is None else key.shape[-1]
        self.use_count = torch.zeros(1, 1, length, dtype=torch.float64)
        self.life_count = torch.full((1, 1, length), 1e-7, dtype=torch.float64)

    key = property(lambda self: self.k)
    value = property(lambda self: self.v)
    shrinkage = property(lambda self: self.s)
    size = property(lambda self: 0 if self.k is None else self.k.shape[-1])
    num_groups = property(lambda self: len(self.v))

    def get_v_size(self, group: int) -> int:
        return self.v[group].shape[-1]

    def engaged(self) -> bool:
        return self.k is not None

    def update_usage(self, usage: Tensor) -> None:
        self.use_count = self.use_count + usage.double().view_as(self.use_count)
        self.life_count = self.life_count + 1


def _xmem_group_entries(manager, group: int) -> list[int]:
    """Indices, in [long-term entries, working entries], of the entries object group ``group`` reads."""
    work = manager.work_mem
    long_on = manager.enable_long_term and manager.long_mem.engaged()
    offset = manager.long_mem.size if long_on else 0
    entries = []
    if long_on and group < manager.long_mem.num_groups:
        entries += range(offset - manager.long_mem.get_v_size(group), offset)
    work_len = work.size if group == 0 else work.get_v_size(group)
    entries += range(offset + work.size - work_len, offset + work.size)
    return entries


class XMemManager:
    """XMem's MemoryManager reads, from the maths."""

    def __init__(self, work, long=None, *, top_k=30, enable_long_term=True, count_long_usage=True, num_prototypes=8):
        self.work_mem, self.long_mem = work, long if long is not None else XMemStore(None, None, [])
        self.top_k = top_k
        self.enable_long_term = enable_long_term
        self.enable_long_term_usage = count_long_usage
        self.num_prototypes = num_prototypes
        self.CV = work.value[0].shape[1]

    def match_memory(self, query_key, selection):
        height, width = query_key.shape[-2:]
        long_on = self.enable_long_term and self.long_mem.engaged()
        stores = [self.long_mem, self.work_mem] if long_on else [self.work_mem]
        keys = torch.cat([s.key for s in stores], -1)
        shrinkage = torch.cat([s.shrinkage for s in stores], -1)
        q_sel = selection.flatten(2) if selection is not None else None
        logits = fm.l2_logits(keys, query_key.flatten(2), shrinkage, q_sel)
        readouts = []
        for group in range(self.work_mem.num_groups):
            entries = torch.tensor(_xmem_group_entries(self, group))
            weights = fm.softmax_weights(logits[:, entries], self.top_k)
            values = torch.cat([s.value[group] for s in stores if group < s.num_groups], -1)
            readout, usage = fm.read(values, weights)
            readouts.append(readout)
            if group == 0 and self.enable_long_term:
                full = torch.zeros(1, keys.shape[-1], dtype=torch.float64)
                full[:, entries] = usage
                long_size = self.long_mem.size if long_on else 0
                self.work_mem.update_usage(full[:, long_size:])
                if long_on and self.enable_long_term_usage:
                    self.long_mem.update_usage(full[:, :long_size])
        out = torch.cat(readouts, 0)
        return out.view(out.shape[0], self.CV, height, width)

    def consolidation(self, candidate_key, candidate_shrinkage, candidate_selection, usage, candidate_value):
        total = candidate_key.shape[-1]
        order = usage.flatten().double().argsort(descending=True)
        chosen = order[: self.num_prototypes]
        logits = fm.l2_logits(
            candidate_key,
            candidate_key[:, :, chosen],
            candidate_shrinkage,
            candidate_selection[:, :, chosen] if candidate_selection is not None else None,
        )
        values, first_weights = [], None
        for group_values in candidate_value:
            if group_values is None:
                values.append(None)
                continue
            start = total - group_values.shape[-1]
            reaching = [p for p in range(len(chosen)) if int(chosen[p]) >= start]
            if not reaching:
                values.append(None)
                continue
            weights = fm.softmax_weights(logits[:, start:, reaching])
            first_weights = weights if first_weights is None else first_weights
            values.append(fm.read(group_values, weights)[0])
        shrinkage = fm.read(candidate_shrinkage, first_weights)[0]
        return candidate_key[:, :, chosen], values, shrinkage


def xmem_modules() -> dict[str, types.ModuleType]:
    inference, model = types.ModuleType("inference"), types.ModuleType("model")
    manager_module = types.ModuleType("inference.memory_manager")
    manager_module.MemoryManager = XMemManager
    manager_module.KeyValueMemoryStore = XMemStore
    util = types.ModuleType("model.memory_util")

    def get_similarity(mk, ms, qk, qe):
        return fm.l2_logits(mk.flatten(2), qk.flatten(2), ms, qe.flatten(2) if qe is not None else None)

    def do_softmax(similarity, top_k=None, inplace=False, return_usage=False):
        weights = fm.softmax_weights(similarity, top_k)
        return (weights, weights.sum(2)) if return_usage else weights

    util.get_similarity, util.do_softmax = get_similarity, do_softmax
    inference.memory_manager, model.memory_util = manager_module, util
    return {
        "inference": inference,
        "inference.memory_manager": manager_module,
        "model": model,
        "model.memory_util": util,
    }


# ---------------------------------------------------------------------------------------------
# Cutie: cutie.inference.memory_manager and cutie.model.utils.memory_utils


class CutieStore:
    """Per bucket: keys (bs, Ck, N), shrinkage (bs, 1, N); per object: values (bs, Cv, N)."""

    def __init__(self) -> None:
        self.buckets, self.k, self.s, self.v = {}, {}, {}, {}
        self.usage_log: dict[int, list[Tensor]] = {}

    key = property(lambda self: self.k)
    shrinkage = property(lambda self: self.s)
    value = property(lambda self: self.v)

    def size(self, bucket_id: int) -> int:
        return self.k[bucket_id].shape[-1] if bucket_id in self.k else 0

    def engaged(self, bucket_id: int | None = None) -> bool:
        return bool(self.buckets) if bucket_id is None else bucket_id in self.buckets

    def update_bucket_usage(self, bucket_id: int, usage: Tensor) -> None:
        self.usage_log.setdefault(bucket_id, []).append(usage.double().clone())


class CutieManager:
    """Cutie's MemoryManager read, from the maths; sensory memory and masks per object id."""

    def __init__(self, work, long, *, top_k=30, use_long_term=True, chunk_size=-1, num_prototypes=8):
        self.work_mem, self.long_mem = work, long
        self.top_k, self.use_long_term, self.count_long_term_usage = top_k, use_long_term, True
        self.chunk_size, self.num_prototypes, self.save_aux = chunk_size, num_prototypes, False
        self.sensory, self.obj_v = {}, {}
        self.object_order: list[int] = []
        self.CV = next(iter(work.v.values())).shape[1]

    def _get_sensory_by_ids(self, obj_ids):
        return torch.stack([self.sensory[obj] for obj in obj_ids], dim=1)

    def _get_mask_by_ids(self, mask, obj_ids):
        return mask[:, [self.object_order.index(obj) for obj in obj_ids]]

    def _get_object_mem_by_ids(self, obj_ids):
        return None

    def _get_visual_values_by_ids(self, obj_ids):
        parts = []
        for obj in obj_ids:
            stored = [store.v[obj] for store in (self.long_mem, self.work_mem) if obj in store.v]
            parts.append(torch.cat(stored, -1))
        return torch.stack(parts, dim=1)

    def read(self, pix_feat, query_key, selection, last_mask, network):
        height, width = pix_feat.shape[-2:]
        out = {}
        for bucket_id, bucket in self.work_mem.buckets.items():
            long_on = self.use_long_term and self.long_mem.engaged(bucket_id)
            stores = [self.long_mem, self.work_mem] if long_on else [self.work_mem]
            keys = torch.cat([s.k[bucket_id] for s in stores], -1)
            shrinkage = torch.cat([s.s[bucket_id] for s in stores], -1)
            logits = fm.l2_logits(keys, query_key.flatten(2), shrinkage, selection.flatten(2))
            weights = fm.softmax_weights(logits, self.top_k)
            if self.use_long_term:
                usage = weights.sum(2)
                long_size = self.long_mem.size(bucket_id) if long_on else 0
                self.work_mem.update_bucket_usage(bucket_id, usage[:, long_size:])
                if long_on:
                    self.long_mem.update_bucket_usage(bucket_id, usage[:, :long_size])
            step = len(bucket) if self.chunk_size < 1 else self.chunk_size
            for start in range(0, len(bucket), step):
                objects = bucket[start : start + step]
                values = self._get_visual_values_by_ids(objects)  # (bs, n, Cv, N)
                visual = torch.einsum("bocn,bnp->bocp", values.double(), weights)
                visual = visual.view(*visual.shape[:3], height, width)
                fused = network.pixel_fusion(
                    pix_feat, visual, self._get_sensory_by_ids(objects), self._get_mask_by_ids(last_mask, objects)
                )
                readout, _ = network.readout_query(fused, None)
                for index, obj in enumerate(objects):
                    out[obj] = readout[:, index]
        return out

    def consolidation(self, candidate_key, candidate_shrinkage, candidate_selection, candidate_value, usage):
        chosen = usage.double().argsort(dim=-1, descending=True)[:, : self.num_prototypes]  # (bs, K)
        prototype_key = torch.stack([candidate_key[b][:, chosen[b]] for b in range(chosen.shape[0])])
        prototype_sel = torch.stack([candidate_selection[b][:, chosen[b]] for b in range(chosen.shape[0])])
        weights = fm.softmax_weights(fm.l2_logits(candidate_key, prototype_key, candidate_shrinkage, prototype_sel))
        values = {obj: fm.read(v, weights)[0] for obj, v in candidate_value.items()}
        return prototype_key, values, fm.read(candidate_shrinkage, weights)[0]


class CutieNetwork:
    """Stands in for Cutie's pixel fusion and object readout: simple, object-wise, deterministic."""

    def pixel_fusion(self, pix_feat, visual, sensory, last_mask):
        # (bs, n, Cv, H, W) -> same, mixing in every input so a wrong object or chunk shows.
        return visual * 2 + pix_feat[:, None, :1] + sensory.mean(2, keepdim=True) + last_mask[:, :, None]

    def readout_query(self, pixel_readout, object_memory):
        return pixel_readout.tanh(), None


def cutie_modules() -> dict[str, types.ModuleType]:
    names = ["cutie", "cutie.inference", "cutie.model", "cutie.model.utils"]
    modules = {name: types.ModuleType(name) for name in names}
    manager_module = types.ModuleType("cutie.inference.memory_manager")
    manager_module.MemoryManager, manager_module.KeyValueMemoryStore = CutieManager, CutieStore
    utils = types.ModuleType("cutie.model.utils.memory_utils")

    def get_similarity(mk, ms, qk, qe, add_batch_dim=False):
        return fm.l2_logits(mk.flatten(2), qk.flatten(2), ms, qe.flatten(2) if qe is not None else None)

    def do_softmax(similarity, top_k=None, inplace=False, return_usage=False):
        weights = fm.softmax_weights(similarity, top_k)
        return (weights, weights.sum(2)) if return_usage else weights

    utils.get_similarity, utils.do_softmax = get_similarity, do_softmax
    modules["cutie.inference.memory_manager"] = manager_module
    modules["cutie.model.utils.memory_utils"] = utils
    return modules


# ---------------------------------------------------------------------------------------------
# STCN: inference_memory_bank


def stcn_modules() -> dict[str, types.ModuleType]:
    module = types.ModuleType("inference_memory_bank")

    def softmax_w_top(x, top):
        return fm.softmax_weights(x, top)

    class MemoryBank:
        def __init__(self, k, top_k=20):
            self.top_k, self.num_objects = top_k, k
            self.mem_k = self.mem_v = self.temp_k = self.temp_v = None
            self.CK = self.CV = None

        def _global_matching(self, mk, qk):
            return softmax_w_top(fm.l2_logits(mk, qk), self.top_k)

        def match_memory(self, qk):
            height, width = qk.shape[-2:]
            keys = self.mem_k if self.temp_k is None else torch.cat([self.mem_k, self.temp_k], 2)
            values = self.mem_v if self.temp_v is None else torch.cat([self.mem_v, self.temp_v], 2)
            weights = self._global_matching(keys, qk.flatten(2))
            readout = fm.read(values, weights.expand(self.num_objects, -1, -1))[0]
            return readout.view(self.num_objects, self.CV, height, width)

    module.softmax_w_top, module.MemoryBank = softmax_w_top, MemoryBank
    return {"inference_memory_bank": module}


# ---------------------------------------------------------------------------------------------
# STM (model.Memory returns a pair) and the official SwiftNet (swiftnet.Memory returns one tensor)


def _dot_read_concat(m_in, m_out, q_in, q_out):
    batch, value_dim, height, width = q_out.shape
    weights = torch.softmax(fm.dot_logits(m_in.flatten(2), q_in.flatten(2)), dim=1)
    readout = fm.read(m_out.flatten(2), weights)[0].view(batch, value_dim, height, width)
    return torch.cat([readout, q_out.double()], 1), weights


def memory_module(name: str, model_class: str, pair: bool) -> dict[str, types.ModuleType]:
    module = types.ModuleType(name)

    class Memory(nn.Module):
        def forward(self, m_in, m_out, q_in, q_out):
            out, weights = _dot_read_concat(m_in, m_out, q_in, q_out)
            return (out, weights) if pair else out

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.Memory = Memory()

    Model.__name__ = model_class
    module.Memory = Memory
    setattr(module, model_class, Model)
    return {name: module}
