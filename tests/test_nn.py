"""swiftcuda.nn.MemoryRead: a drop-in for the official SwiftNet ``Memory`` module."""

from __future__ import annotations

import math

import pytest
import torch

from swiftcuda.nn import MemoryRead
from swiftcuda.ops import backends


def official_memory(m_in, m_out, q_in, q_out):
    """The official module's arithmetic, written out in float64: keys (B, Ck, N), query (B, Ck, H, W).

    exp of the raw scaled logits, normalised over the memory axis, values times weights, then the
    query values concatenated on the channel axis.
    """
    batch, key_dim, entries = m_in.shape
    _, value_dim, height, width = q_out.shape
    logits = m_in.double().transpose(1, 2) @ q_in.double().reshape(batch, key_dim, height * width) / math.sqrt(key_dim)
    weights = torch.exp(logits)
    weights = weights / weights.sum(dim=1, keepdim=True)
    read = (m_out.double().reshape(batch, value_dim, entries) @ weights).reshape(batch, value_dim, height, width)
    return torch.cat([read, q_out.double()], dim=1)


@pytest.fixture(params=["reference", "triton", "cpu"])
def backend(request) -> str:
    reason = backends.unavailable_reason(request.param, "cpu")
    if reason is not None:
        pytest.skip(f"backend {request.param!r} unavailable: {reason}")
    return request.param


def test_matches_the_official_module(backend, generator):
    objects, key_dim, value_dim, entries, height, width = 3, 32, 128, 301, 5, 7
    m_in = torch.randn(objects, key_dim, entries, generator=generator)
    m_out = torch.randn(objects, value_dim, entries, generator=generator)
    # The official segment() expands one query over the objects.
    q_in = torch.randn(1, key_dim, height, width, generator=generator).expand(objects, -1, -1, -1)
    q_out = torch.randn(1, value_dim, height, width, generator=generator).expand(objects, -1, -1, -1)
    result = MemoryRead(backend=backend)(m_in, m_out, q_in, q_out)
    assert result.shape == (objects, 2 * value_dim, height, width) and result.dtype == torch.float32
    torch.testing.assert_close(result.double(), official_memory(m_in, m_out, q_in, q_out), rtol=2e-5, atol=2e-6)


def test_stm_five_dimensional_memory_and_valid_lengths(backend):
    generator = torch.Generator().manual_seed(1)
    batch, key_dim, value_dim, frames, height, width = 2, 16, 24, 3, 4, 6
    m_in = torch.randn(batch, key_dim, frames, height, width, generator=generator)
    m_out = torch.randn(batch, value_dim, frames, height, width, generator=generator)
    q_in = torch.randn(batch, key_dim, height, width, generator=generator)
    q_out = torch.randn(batch, value_dim, height, width, generator=generator)
    module = MemoryRead(backend=backend)
    expected = official_memory(m_in.flatten(2), m_out.flatten(2), q_in, q_out)
    torch.testing.assert_close(module(m_in, m_out, q_in, q_out).double(), expected, rtol=2e-5, atol=2e-6)
    # With n_valid, only the first frame of the memory is read.
    n_valid = torch.full((batch,), height * width, dtype=torch.int64)
    first = official_memory(m_in[:, :, 0].flatten(2), m_out[:, :, 0].flatten(2), q_in, q_out)
    torch.testing.assert_close(module(m_in, m_out, q_in, q_out, n_valid).double(), first, rtol=2e-5, atol=2e-6)


def test_rejects_wrong_layouts():
    module = MemoryRead()
    with pytest.raises(ValueError, match="q_in and q_out"):
        module(torch.randn(1, 8, 10), torch.randn(1, 4, 10), torch.randn(1, 8, 10), torch.randn(1, 4, 10))
    with pytest.raises(ValueError, match="query shapes"):
        module(torch.randn(1, 8, 10), torch.randn(1, 4, 10), torch.randn(1, 6, 2, 5), torch.randn(1, 4, 2, 5))
    assert "backend=None" in repr(module)
