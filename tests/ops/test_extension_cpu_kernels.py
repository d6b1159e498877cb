"""Paths of the C++ CPU kernels that the shared backend tests do not reach.

The split memory axis (few query tiles, more threads), outputs that are not row-contiguous, long
memories that span many tiles, and length edge cases of the in-place update.
"""

from __future__ import annotations

import math

import pytest
import torch

from swiftcuda import ops
from swiftcuda.ops import extension
from swiftcuda.ops.reference import novel_pixel_count
from tests.ops.test_memory_read import truth as read_spec
from tests.ops.tolerances import assert_close_to_truth, poisoned, rounded_to

pytestmark = pytest.mark.skipif(
    not extension.status().loaded, reason=f"extension unavailable: {extension.status().error}"
)


@pytest.fixture
def four_threads():
    """More threads than query tiles: the CPU read and update split the memory axis."""
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def read_truth(mem_key, mem_val, q_key, q_val, lengths):
    rows = []
    for b, n in enumerate(lengths):
        keys, values = mem_key[b, :, :n].double(), mem_val[b, :, :n].double()
        weights = torch.softmax(keys.T @ q_key[b].double() / math.sqrt(mem_key.shape[1]), dim=0)
        read = values @ weights if n else torch.zeros(mem_val.shape[1], q_key.shape[2], dtype=torch.float64)
        rows.append(torch.cat([read, q_val[b].double()]))
    return torch.stack(rows)


def test_split_memory_axis_matches_spec(four_threads, generator):
    batch, key_dim, value_dim, entries, pixels = 3, 32, 40, 5003, 7
    draw = lambda *s: torch.randn(*s, generator=generator) * 1.5  # noqa: E731
    mem_key, mem_val, q_key, q_val = (
        draw(batch, key_dim, entries),
        draw(batch, value_dim, entries),
        draw(batch, key_dim, pixels),
        draw(batch, value_dim, pixels),
    )
    lengths = [entries, 0, 2100]
    for b, n in enumerate(lengths):
        mem_key[b, :, n:] = float("nan")
        mem_val[b, :, n:] = float("nan")
    out = poisoned((batch, 2 * value_dim, pixels), torch.float32, torch.device("cpu"))
    ops.memory_read(mem_key, mem_val, q_key, q_val, n_valid=torch.tensor(lengths), out=out, backend="cpu")
    assert_close_to_truth(out, read_truth(mem_key, mem_val, q_key, q_val, lengths))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_read_into_a_transposed_out(dtype, generator):
    mem_key, mem_val = torch.randn(2, 16, 1500, generator=generator), torch.randn(2, 24, 1500, generator=generator)
    q_key, q_val = torch.randn(2, 16, 70, generator=generator), torch.randn(2, 24, 70, generator=generator)
    inputs = [t.to(dtype) for t in (mem_key, mem_val, q_key, q_val)]
    out = torch.full((2, 70, 48), float("nan"), dtype=dtype).transpose(1, 2)  # last dimension strided
    ops.memory_read(*inputs, out=out, backend="cpu")
    expected = read_truth(*inputs, [1500, 1500])
    assert_close_to_truth(out, expected, read_spec(*inputs, rounding=rounded_to(dtype)))


def test_update_split_memory_axis_matches_reference(four_threads, generator):
    mem_key, mem_val = torch.randn(2, 32, 4000, generator=generator), torch.randn(2, 8, 4000, generator=generator)
    new_key, new_val = torch.randn(2, 32, 30, generator=generator), torch.randn(2, 8, 30, generator=generator)
    expected = ops.memory_update(mem_key, mem_val, new_key, new_val, beta=0.2, backend="reference")
    result = ops.memory_update(mem_key, mem_val, new_key, new_val, beta=0.2, backend="cpu")
    torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_update_lengths_at_and_past_capacity(generator):
    key_buf, val_buf = torch.randn(3, 8, 50, generator=generator), torch.randn(3, 4, 50, generator=generator)
    new_key, new_val = torch.randn(3, 8, 20, generator=generator), torch.randn(3, 4, 20, generator=generator)
    before_key, before_val = key_buf.clone(), val_buf.clone()
    n_valid = torch.tensor([50, 60, 48], dtype=torch.int32)
    ops.memory_update_(key_buf, val_buf, n_valid, new_key, new_val, beta=0.25, backend="cpu")
    count = novel_pixel_count(20, 0.25)
    assert n_valid.tolist() == [50, 60, 50], "a full buffer stays full; only what fits is written"
    assert torch.equal(key_buf[:2], before_key[:2]) and torch.equal(val_buf[:2], before_val[:2])
    reference_key, reference_val = before_key.clone(), before_val.clone()
    ops.memory_update_(
        reference_key, reference_val, torch.tensor([50, 60, 48]), new_key, new_val, beta=0.25, backend="reference"
    )
    assert count > 2 and torch.equal(key_buf, reference_key) and torch.equal(val_buf, reference_val)


@pytest.mark.parametrize("objects", [1, 2, 7])
def test_rsp_many_objects(objects, generator):
    probs = torch.rand(objects, 32, 48, generator=generator)
    own, others = ops.rsp(probs, factor=16, backend="cpu")
    ref_own, ref_others = ops.rsp(probs, factor=16, backend="reference")
    assert torch.equal(own, ref_own)
    torch.testing.assert_close(others, ref_others, rtol=2e-6, atol=1e-6)
