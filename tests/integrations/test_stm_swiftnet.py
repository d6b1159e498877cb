"""STM's and the official SwiftNet's Memory on the fused read: the patches and swiftcuda.nn's modules."""

from __future__ import annotations

import pytest
import torch

import swiftcuda.integrations.stm as st
import swiftcuda.integrations.swiftnet as sw
from swiftcuda.integrations import IntegrationError
from swiftcuda.nn import MemoryRead, STMMemoryRead
from tests.integrations.fakes import _dot_read_concat, memory_module

OBJECTS, KEY_DIM, VALUE_DIM, FRAMES, HEIGHT, WIDTH = 3, 16, 24, 2, 5, 6


def _inputs(generator):
    m_in = torch.randn(OBJECTS, KEY_DIM, FRAMES, HEIGHT, WIDTH, generator=generator)
    m_out = torch.randn(OBJECTS, VALUE_DIM, FRAMES, HEIGHT, WIDTH, generator=generator)
    # STM expands one query over the objects.
    q_in = torch.randn(1, KEY_DIM, HEIGHT, WIDTH, generator=generator).expand(OBJECTS, -1, -1, -1)
    q_out = torch.randn(1, VALUE_DIM, HEIGHT, WIDTH, generator=generator).expand(OBJECTS, -1, -1, -1)
    return m_in, m_out, q_in, q_out


def test_stm_patch_keeps_the_pair_stm_unpacks(install, generator):
    module = install(memory_module("model", "STM", pair=True))["model"]
    model = module.STM()  # built before the patch: its Memory instance is patched too
    inputs = _inputs(generator)
    expected, _ = _dot_read_concat(*inputs)
    with st.patch():
        readout, attention = model.Memory(*inputs)  # as STM's segment() unpacks it
    assert attention is None
    torch.testing.assert_close(readout.double(), expected, rtol=2e-5, atol=2e-6)
    assert isinstance(model.Memory(*inputs), tuple) and model.Memory(*inputs)[1] is not None  # undone


def test_stm_memory_read_module_swaps_in(generator):
    inputs = _inputs(generator)
    readout, attention = STMMemoryRead()(*inputs)
    assert attention is None
    torch.testing.assert_close(readout.double(), _dot_read_concat(*inputs)[0], rtol=2e-5, atol=2e-6)
    # The SwiftNet module returns the readout alone, as the official SwiftNet Memory does.
    torch.testing.assert_close(MemoryRead()(*inputs), readout)


def test_swiftnet_patch_returns_the_readout_alone(install, generator):
    module = install(memory_module("swiftnet", "SwiftNet", pair=False))["swiftnet"]
    model = module.SwiftNet()
    m_in, m_out, q_in, q_out = _inputs(generator)
    inputs = (m_in.flatten(2), m_out.flatten(2), q_in, q_out)  # SwiftNet's memory is (B, C, N)
    expected = model.Memory(*inputs)
    with sw.patch() as handle:
        got = model.Memory(*inputs)
        assert "Memory.forward" in handle.targets[0]
    torch.testing.assert_close(got.double(), expected, rtol=2e-5, atol=2e-6)


def test_modules_of_another_project_are_refused(install):
    with pytest.raises(IntegrationError, match=r"STM's module 'model' is not importable"):
        st.patch()
    install(memory_module("model", "XMem", pair=True))  # a 'model' that is not STM's
    with pytest.raises(IntegrationError, match=r"model.STM not found .*not STM's module"):
        st.patch()
    other = memory_module("other_name", "STM", pair=True)["other_name"]
    with st.patch(other) as handle:  # the module itself, whatever its name
        assert handle.active
    with pytest.raises(IntegrationError, match="official SwiftNet repository"):
        sw.patch()
