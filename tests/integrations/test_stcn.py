"""swiftcuda.integrations.stcn against STCN's read restated in float64 (tests/integrations/fakes.py)."""

from __future__ import annotations

import pytest
import torch

import swiftcuda.integrations.stcn as ss
from swiftcuda.integrations import IntegrationError
from tests.integrations import family_maths as fm
from tests.integrations.fakes import stcn_modules

KEY_DIM, VALUE_DIM, HEIGHT, WIDTH, TOP_K = 16, 12, 6, 5, 20


def _bank(module, generator, objects, memory, temporary):
    for _ in range(50):
        bank = module.MemoryBank(k=objects, top_k=TOP_K)
        bank.CK, bank.CV = KEY_DIM, VALUE_DIM
        bank.mem_k = torch.randn(1, KEY_DIM, memory, generator=generator)
        bank.mem_v = torch.randn(objects, VALUE_DIM, memory, generator=generator)
        if temporary:
            bank.temp_k = torch.randn(1, KEY_DIM, temporary, generator=generator)
            bank.temp_v = torch.randn(objects, VALUE_DIM, temporary, generator=generator)
        query = torch.randn(1, KEY_DIM, HEIGHT, WIDTH, generator=generator)
        keys = bank.mem_k if not temporary else torch.cat([bank.mem_k, bank.temp_k], 2)
        if fm.kth_gap(fm.l2_logits(keys, query.flatten(2)), TOP_K) > 1e-3:
            return bank, query
    raise AssertionError("could not draw inputs without near-ties")


@pytest.mark.parametrize("objects, memory, temporary", [(3, 97, 30), (1, 61, 0), (2, 15, 0)])
def test_match_memory_equals_the_maths(install, generator, objects, memory, temporary):
    module = install(stcn_modules())["inference_memory_bank"]
    bank, query = _bank(module, generator, objects, memory, temporary)
    expected = bank.match_memory(query)
    with ss.patch():
        got = bank.match_memory(query)
    assert got.shape == (objects, VALUE_DIM, HEIGHT, WIDTH)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5, msg=f"seed {generator.initial_seed()}")


def test_undo_and_errors(install, generator):
    with pytest.raises(IntegrationError, match=r"'inference_memory_bank' is not importable: put the STCN"):
        ss.patch()
    module = install(stcn_modules())["inference_memory_bank"]
    original = module.MemoryBank.match_memory
    handle = ss.patch()
    handle.undo()
    assert module.MemoryBank.match_memory is original
    bank, query = _bank(module, generator, 2, 40, 0)
    bank.top_k = 100
    expected = bank.match_memory(query)
    with ss.patch(), pytest.warns(UserWarning, match="STCN's top_k=100"):
        assert torch.equal(bank.match_memory(query), expected)
    del module.softmax_w_top
    with pytest.raises(IntegrationError, match="inference_memory_bank.softmax_w_top not found"):
        ss.patch()
