"""swiftcuda.integrations.cutie against Cutie's read restated in float64 (tests/integrations/fakes.py)."""

from __future__ import annotations

import pytest
import torch

import swiftcuda.integrations.cutie as sc
from swiftcuda.integrations import IntegrationError
from tests.integrations import family_maths as fm
from tests.integrations.fakes import (
    CutieManager,
    CutieNetwork,
    CutieStore,
    cutie_modules,
)

KEY_DIM, VALUE_DIM, HEIGHT, WIDTH, TOP_K = 16, 8, 4, 6, 9
# Buckets: object ids, working-memory length, long-term length (0: none yet).
BUCKETS = {0: ([1, 2, 4], 70, 30), 1: ([3], 40, 0), 2: ([5, 6], 25, 12)}


def _scenario(generator, batch: int, long_term: bool):
    for _ in range(50):
        work, long = CutieStore(), CutieStore()
        for bucket_id, (objects, work_len, long_len) in BUCKETS.items():
            for store, length in ((work, work_len), (long, long_len if long_term else 0)):
                if length == 0:
                    continue
                store.buckets[bucket_id] = list(objects)
                store.k[bucket_id] = torch.randn(batch, KEY_DIM, length, generator=generator)
                store.s[bucket_id] = 1 + torch.rand(batch, 1, length, generator=generator) * 2
                for obj in objects:
                    store.v[obj] = torch.randn(batch, VALUE_DIM, length, generator=generator)
        manager = CutieManager(work, long, top_k=TOP_K, use_long_term=long_term)
        manager.object_order = sorted(work.v)
        for obj in manager.object_order:
            manager.sensory[obj] = torch.randn(batch, 3, HEIGHT, WIDTH, generator=generator)
        inputs = (
            torch.randn(batch, 5, HEIGHT, WIDTH, generator=generator),  # pix_feat
            torch.randn(batch, KEY_DIM, HEIGHT, WIDTH, generator=generator),
            torch.sigmoid(torch.randn(batch, KEY_DIM, HEIGHT, WIDTH, generator=generator)),
            torch.rand(batch, len(manager.object_order), HEIGHT, WIDTH, generator=generator),
        )
        gaps = []
        for bucket_id in BUCKETS:
            stores = [s for s in (long, work) if s.engaged(bucket_id)]
            logits = fm.l2_logits(
                torch.cat([s.k[bucket_id] for s in stores], -1),
                inputs[1].flatten(2),
                torch.cat([s.s[bucket_id] for s in stores], -1),
                inputs[2].flatten(2),
            )
            gaps.append(fm.kth_gap(logits, TOP_K))
        if min(gaps) > 1e-3:
            return manager, inputs
    raise AssertionError("could not draw inputs without near-ties")


@pytest.mark.parametrize("batch, long_term, chunk_size", [(1, True, -1), (2, True, 2), (1, False, 1)])
def test_read_equals_the_maths_per_object_with_usage(install, generator, batch, long_term, chunk_size):
    install(cutie_modules())
    manager, inputs = _scenario(generator, batch, long_term)
    manager.chunk_size = chunk_size
    network = CutieNetwork()
    expected = manager.read(*inputs, network)
    expected_usage = {
        name: {b: list(log) for b, log in getattr(manager, name).usage_log.items()} for name in ("work_mem", "long_mem")
    }
    manager.work_mem.usage_log.clear()
    manager.long_mem.usage_log.clear()
    with sc.patch():
        got = manager.read(*inputs, network)
    assert sorted(got) == sorted(expected) == [1, 2, 3, 4, 5, 6]
    for obj in expected:
        assert got[obj].shape == (batch, VALUE_DIM, HEIGHT, WIDTH)
        torch.testing.assert_close(got[obj].double(), expected[obj], rtol=1e-4, atol=1e-5, msg=f"object {obj}")
    for name in ("work_mem", "long_mem"):
        got_log = getattr(manager, name).usage_log
        assert sorted(got_log) == sorted(expected_usage[name])
        for bucket_id, entries in expected_usage[name].items():
            for got_usage, expected_bucket_usage in zip(got_log[bucket_id], entries, strict=True):
                torch.testing.assert_close(got_usage, expected_bucket_usage, rtol=1e-4, atol=1e-5)
    if not long_term:
        assert not manager.work_mem.usage_log


def test_consolidation_reads_values_and_shrinkage(install, generator):
    install(cutie_modules())
    batch, candidates, prototypes = 2, 50, 7
    key = torch.randn(batch, KEY_DIM, candidates, generator=generator)
    shrinkage = 1 + torch.rand(batch, 1, candidates, generator=generator)
    selection = torch.sigmoid(torch.randn(batch, KEY_DIM, candidates, generator=generator))
    values = {obj: torch.randn(batch, VALUE_DIM, candidates, generator=generator) for obj in (2, 7)}
    usage = torch.rand(batch, candidates, generator=generator)
    manager = object.__new__(CutieManager)
    manager.num_prototypes = prototypes
    expected = CutieManager.consolidation(manager, key, shrinkage, selection, values, usage)
    with sc.patch():
        got = CutieManager.consolidation(manager, key, shrinkage, selection, values, usage)
    torch.testing.assert_close(got[0], expected[0])
    assert sorted(got[1]) == [2, 7]
    for obj in (2, 7):
        torch.testing.assert_close(got[1][obj].double(), expected[1][obj], rtol=1e-4, atol=1e-5)
    assert got[2].shape == (batch, 1, prototypes)
    torch.testing.assert_close(got[2].double(), expected[2], rtol=1e-4, atol=1e-5)


def test_undo_and_errors(install):
    with pytest.raises(IntegrationError, match=r"'cutie.inference.memory_manager' is not importable: install Cutie"):
        sc.patch()
    modules = install(cutie_modules())
    original = CutieManager.read
    with sc.patch() as handle:
        assert CutieManager.read is not original and handle.active
    assert CutieManager.read is original
    del modules["cutie.model.utils.memory_utils"].get_similarity
    with pytest.raises(IntegrationError, match="get_similarity not found"):
        sc.patch()
    assert CutieManager.read is original
