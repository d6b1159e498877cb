"""swiftcuda.integrations.xmem against XMem's read restated in float64 (tests/integrations/fakes.py)."""

from __future__ import annotations

import pytest
import torch

import swiftcuda.integrations.xmem as sx
from swiftcuda.integrations import IntegrationError
from tests.integrations import family_maths as fm
from tests.integrations.fakes import (
    XMemManager,
    XMemStore,
    _xmem_group_entries,
    xmem_modules,
)

KEY_DIM, VALUE_DIM, HEIGHT, WIDTH = 16, 8, 5, 7
# (objects, working-memory length, long-term length or None) per object group: groups that
# entered later cover shorter suffixes; the last one has no long-term memory yet.
GROUPS = [(3, 90, 40), (2, 55, 25), (1, 20, None)]


def _store(generator, length, groups, selection=True):
    key = torch.randn(1, KEY_DIM, length, generator=generator)
    shrinkage = 1 + torch.rand(1, 1, length, generator=generator) * 3
    values = [torch.randn(objects, VALUE_DIM, size, generator=generator) for objects, size in groups]
    return XMemStore(key, shrinkage, values)


def _scenario(generator, *, long_term: str, top_k: int, selection: bool):
    """A manager and a query whose reads have no near-tie at the k-th place (redrawn until so)."""
    for _ in range(50):
        work = _store(generator, GROUPS[0][1], [(o, w) for o, w, _ in GROUPS])
        long = None
        if long_term == "engaged":
            long = _store(generator, GROUPS[0][2], [(o, lt) for o, _, lt in GROUPS if lt is not None])
        manager = XMemManager(work, long, top_k=top_k, enable_long_term=long_term != "off")
        query = torch.randn(1, KEY_DIM, HEIGHT, WIDTH, generator=generator)
        sel = torch.sigmoid(torch.randn(1, KEY_DIM, HEIGHT, WIDTH, generator=generator)) if selection else None
        stores = [s for s in (manager.long_mem, work) if s.engaged() and (s is work or long_term == "engaged")]
        logits = fm.l2_logits(
            torch.cat([s.key for s in stores], -1),
            query.flatten(2),
            torch.cat([s.shrinkage for s in stores], -1),
            sel.flatten(2) if sel is not None else None,
        )
        gaps = [fm.kth_gap(logits[:, _xmem_group_entries(manager, g)], top_k) for g in range(len(GROUPS))]
        if min(gaps) > 1e-3:
            return manager, query, sel
    raise AssertionError("could not draw inputs without near-ties")


def _copy(manager):
    """The same memory in a second manager, so the two paths each update their own usage."""
    copy = XMemManager(
        XMemStore(manager.work_mem.k, manager.work_mem.s, list(manager.work_mem.v)),
        XMemStore(manager.long_mem.k, manager.long_mem.s, list(manager.long_mem.v)),
        top_k=manager.top_k,
        enable_long_term=manager.enable_long_term,
    )
    return copy


@pytest.mark.parametrize(
    "long_term, selection",
    [("engaged", True), ("engaged", False), ("not yet", True), ("off", False)],
)
def test_match_memory_reads_every_group_and_counts_usage(install, generator, long_term, selection):
    install(xmem_modules())
    manager, query, sel = _scenario(generator, long_term=long_term, top_k=7, selection=selection)
    expected_manager = _copy(manager)
    expected = expected_manager.match_memory(query, sel)
    with sx.patch():
        got = manager.match_memory(query, sel)
    assert got.shape == (sum(o for o, _, _ in GROUPS), VALUE_DIM, HEIGHT, WIDTH)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5, msg=f"seed {generator.initial_seed()}")
    for store in ("work_mem", "long_mem"):
        got_store, expected_store = getattr(manager, store), getattr(expected_manager, store)
        if expected_store.engaged():
            torch.testing.assert_close(got_store.use_count, expected_store.use_count, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got_store.life_count, expected_store.life_count)
    if long_term != "off":
        # The first group's weights were counted: every query's weights sum to one.
        counted = manager.work_mem.use_count.sum() + (manager.long_mem.use_count.sum() if long_term == "engaged" else 0)
        assert counted == pytest.approx(HEIGHT * WIDTH, rel=1e-4)
    else:
        assert float(manager.work_mem.use_count.abs().sum()) == 0.0


def test_a_top_k_above_a_groups_length_reads_all_of_it(install, generator):
    install(xmem_modules())
    manager, query, sel = _scenario(generator, long_term="not yet", top_k=30, selection=True)
    expected = _copy(manager).match_memory(query, sel)  # the 20-entry group: a full softmax
    with sx.patch():
        torch.testing.assert_close(manager.match_memory(query, sel).double(), expected, rtol=1e-4, atol=1e-5)


def test_consolidation_reads_prototypes_per_group(install, generator):
    install(xmem_modules())
    candidates, objects = 60, (2, 1, 1, 3)
    key = torch.randn(1, KEY_DIM, candidates, generator=generator)
    shrinkage = 1 + torch.rand(1, 1, candidates, generator=generator)
    selection = torch.sigmoid(torch.randn(1, KEY_DIM, candidates, generator=generator))
    usage = torch.rand(1, 1, candidates, generator=generator)
    # Group 0 spans every candidate, group 1 the last 35 (some prototypes reach it), group 2 none
    # of the most used (its values cover candidates no prototype was chosen from), group 3 is absent.
    chosen = set(usage.flatten().argsort(descending=True)[:8].tolist())
    short = next(n for n in range(1, candidates) if not chosen & set(range(candidates - n, candidates)))
    values = [
        torch.randn(objects[0], VALUE_DIM, candidates, generator=generator),
        torch.randn(objects[1], VALUE_DIM, 35, generator=generator),
        torch.randn(objects[2], VALUE_DIM, short, generator=generator),
        None,
    ]
    manager = XMemManager(_store(generator, 10, [(1, 10)]), num_prototypes=8)
    expected_key, expected_values, expected_shrinkage = manager.consolidation(key, shrinkage, selection, usage, values)
    with sx.patch():
        got_key, got_values, got_shrinkage = manager.consolidation(key, shrinkage, selection, usage, values)
    torch.testing.assert_close(got_key, expected_key)
    assert got_values[2] is None and got_values[3] is None
    for got, expected in zip(got_values[:2], expected_values[:2]):
        assert got.shape == expected.shape
        torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_shrinkage.double(), expected_shrinkage, rtol=1e-4, atol=1e-5)


def test_undo_restores_and_a_second_patch_is_refused(install):
    install(xmem_modules())
    originals = XMemManager.match_memory, XMemManager.consolidation
    handle = sx.patch()
    assert handle.active and XMemManager.match_memory is not originals[0]
    assert "XMemManager.match_memory" in repr(handle)
    with pytest.raises(IntegrationError, match="already patched"):
        sx.patch()
    handle.undo()
    handle.undo()  # twice is harmless
    assert (XMemManager.match_memory, XMemManager.consolidation) == originals and not handle.active
    with sx.patch():
        assert XMemManager.consolidation is not originals[1]
    assert XMemManager.consolidation is originals[1]


def test_a_top_k_above_the_fused_limit_keeps_xmems_read(install, generator):
    install(xmem_modules())
    manager, query, sel = _scenario(generator, long_term="off", top_k=7, selection=False)
    manager.top_k = 65
    expected = _copy(manager).match_memory(query, sel)
    with sx.patch(), pytest.warns(UserWarning, match="top_k=65 is above"):
        got = manager.match_memory(query, sel)
    assert torch.equal(got, expected)


def test_missing_or_unrecognised_modules_are_one_clear_error(install):
    with pytest.raises(IntegrationError, match=r"'inference.memory_manager' is not importable: put the XMem"):
        sx.patch()
    modules = install(xmem_modules())
    del modules["model.memory_util"].do_softmax
    with pytest.raises(IntegrationError, match=r"model.memory_util.do_softmax not found .*not XMem's module"):
        sx.patch()
    modules = install(xmem_modules())

    def match_memory(self, key, selection):  # another signature
        raise AssertionError

    modules["inference.memory_manager"].MemoryManager = type("MemoryManager", (), {"match_memory": match_memory})
    with pytest.raises(
        IntegrationError, match=r"takes \(self, key, selection\), expected \(self, query_key, selection\)"
    ):
        sx.patch()
