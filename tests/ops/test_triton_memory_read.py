"""Triton memory read beyond the shared op tests: channel widths, long memories, memory splits,
strided layouts, single entries and pixels, poisoned outputs.

Runs on the CPU under TRITON_INTERPRET=1 (small sizes) and on CUDA when a GPU is present.
"""

from __future__ import annotations

import pytest
import torch

from tests.ops.test_memory_read import random_inputs, truth
from tests.ops.tolerances import assert_close_to_truth, poisoned, rounded_to


def read(mem_key, mem_val, q_key, q_val, n_valid=None, out=None, num_splits=0):
    """The Triton read, with the split count forced when num_splits > 0."""
    from swiftcuda.ops import _triton_ops

    if out is None:
        batch, value_dim, pixels = q_val.shape
        out = poisoned((batch, 2 * value_dim, pixels), q_val.dtype, q_val.device)
    _triton_ops.memory_read_into(mem_key, mem_val, q_key, q_val, n_valid, out, num_splits)
    return out


@pytest.mark.parametrize("key_dim, value_dim", [(16, 1), (32, 200), (64, 512), (128, 77)], ids=lambda v: str(v))
def test_every_key_width_and_value_widths_up_to_512(device, key_dim, value_dim, generator):
    inputs = random_inputs((2, key_dim, value_dim, 131, 21), torch.float32, device, generator, scale=1.5)
    assert_close_to_truth(read(*inputs).cpu(), truth(*[t.cpu() for t in inputs]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("num_splits", [0, 3])
def test_memory_of_several_thousand_entries(device, dtype, num_splits, generator):
    inputs = random_inputs((1, 32, 48, 4099, 37), dtype, device, generator, scale=1.5)
    expected = truth(*[t.cpu() for t in inputs])
    baseline = truth(*[t.cpu() for t in inputs], rounding=rounded_to(dtype))
    assert_close_to_truth(read(*inputs, num_splits=num_splits).cpu(), expected, baseline)


@pytest.mark.parametrize("num_splits", [0, 2])
def test_one_entry_and_one_pixel(device, num_splits, generator):
    inputs = random_inputs((3, 32, 8, 1, 1), torch.float32, device, generator)
    result = read(*inputs, num_splits=num_splits).cpu()
    # A single entry gets all the weight: the read is that entry's value.
    assert_close_to_truth(result, truth(*[t.cpu() for t in inputs]))
    torch.testing.assert_close(result[:, :8, 0], inputs[1][:, :, 0].cpu(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("num_splits", [2, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_split_memory_with_valid_lengths(device, num_splits, dtype, generator):
    """Splits that get no entry (short or empty memories) must not disturb the merge."""
    batch, key_dim, value_dim, capacity, pixels = 5, 16, 24, 700, 19
    mem_key, mem_val, q_key, q_val = random_inputs(
        (batch, key_dim, value_dim, capacity, pixels), dtype, "cpu", generator
    )
    lengths = torch.tensor([capacity, 0, 1, 65, 333], dtype=torch.int64)
    for b, n in enumerate(lengths.tolist()):
        mem_key[b, :, n:] = float("nan")
        mem_val[b, :, n:] = float("inf")
    expected = truth(mem_key, mem_val, q_key, q_val, lengths)
    baseline = truth(mem_key, mem_val, q_key, q_val, lengths, rounding=rounded_to(dtype))
    inputs = [t.to(device) for t in (mem_key, mem_val, q_key, q_val)]
    result = read(*inputs, n_valid=lengths.to(device), num_splits=num_splits).cpu()
    assert_close_to_truth(result, expected, baseline)
    assert (result[1, :value_dim] == 0).all(), "an empty memory reads zeros"


def test_strided_layouts_and_an_output_view(device, generator):
    """Entry-major memory (last dim not contiguous), an expanded query and an output view."""
    batch, key_dim, value_dim, entries, pixels = 2, 32, 40, 150, 23
    mem_key = torch.randn(batch, entries, key_dim, generator=generator).transpose(1, 2)
    mem_val = torch.randn(batch, entries, value_dim, generator=generator).transpose(1, 2)
    q_key = torch.randn(1, key_dim, pixels, generator=generator).expand(batch, -1, -1)
    q_val = torch.randn(1, value_dim, pixels, generator=generator).expand(batch, -1, -1)
    expected = truth(mem_key, mem_val, q_key, q_val)
    # Write into the middle of a larger poisoned buffer: nothing outside the view may change.
    big = poisoned((batch, 2 * value_dim + 6, pixels + 5), torch.float32, device)
    out = big[:, 3 : 3 + 2 * value_dim, 2 : 2 + pixels]
    inputs = [t.to(device) for t in (mem_key, mem_val, q_key, q_val)]
    read(*inputs, out=out)
    assert_close_to_truth(out.cpu(), expected)
    outside = torch.ones(big.shape, dtype=torch.bool)
    outside[:, 3 : 3 + 2 * value_dim, 2 : 2 + pixels] = False
    assert big.cpu()[outside].isnan().all(), "the kernel wrote outside its output view"


def test_prefix_of_a_capacity_buffer_as_the_engine_passes_it(device, generator):
    """The engine reads (O, C, P + capacity) buffers with n_valid; the tail holds old garbage."""
    objects, key_dim, value_dim, pixels, capacity = 3, 32, 24, 20, 200
    keys = torch.randn(objects, key_dim, pixels + capacity, generator=generator) * 1.5
    values = torch.randn(objects, value_dim, pixels + capacity, generator=generator)
    q_key = torch.randn(1, key_dim, pixels, generator=generator).expand(objects, -1, -1)
    q_val = torch.randn(1, value_dim, pixels, generator=generator).expand(objects, -1, -1)
    lengths = torch.tensor([pixels, pixels + 57, pixels + capacity], dtype=torch.int32)
    expected = truth(keys, values, q_key, q_val, lengths)
    inputs = [t.to(device) for t in (keys, values, q_key, q_val)]
    assert_close_to_truth(read(*inputs, n_valid=lengths.to(device)).cpu(), expected)
