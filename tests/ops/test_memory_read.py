"""memory_read: every backend against a float64 computation of the spec."""

from __future__ import annotations

import math

import pytest
import torch

from swiftcuda import ops
from swiftcuda.errors import BackendUnavailableError
from tests.ops.interpreter import is_interpreted, on_diagonal
from tests.ops.tolerances import assert_close_to_truth, poisoned, rounded_to

# (batch, key channels, value channels, memory entries, query pixels); none a multiple of a block.
SHAPES = [
    (1, 32, 128, 1, 1),
    (2, 32, 128, 5, 7),
    (3, 16, 40, 301, 93),
    (1, 64, 96, 2049, 33),
    (2, 128, 24, 777, 17),
    (1, 32, 512, 45, 19),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def truth(mem_key, mem_val, q_key, q_val, n_valid=None, rounding=None):
    """The spec in float64, item by item: V softmax(K^T Q / sqrt(Ck)) over the valid entries.

    ``rounding`` (:func:`tests.ops.tolerances.rounded_to` a half dtype) rounds where PyTorch's
    low-precision path does: the logits' matrix product (accumulated wide, rounded once), their
    scaling, the softmax weights and the read's matrix product. That is the baseline a
    half-precision kernel is held to.
    """
    r = rounding or (lambda t: t)
    results = []
    for b in range(mem_key.shape[0]):
        n = mem_key.shape[2] if n_valid is None else int(n_valid[b])
        keys, values = mem_key[b, :, :n].double(), mem_val[b, :, :n].double()
        logits = r(r(keys.T @ q_key[b].double()) / math.sqrt(mem_key.shape[1]))
        if n:
            weights = torch.exp(logits - logits.max(dim=0).values)
            weights = r(weights / weights.sum(dim=0))
            read = r(values @ weights)
        else:
            read = torch.zeros(mem_val.shape[1], q_key.shape[2], dtype=torch.float64)
        results.append(torch.cat([read, q_val[b].double()]))
    return torch.stack(results)


def random_inputs(shape, dtype, device, generator, scale=1.0):
    batch, key_dim, value_dim, entries, pixels = shape
    draw = lambda *s: (torch.randn(*s, generator=generator) * scale).to(dtype)  # noqa: E731
    tensors = (
        draw(batch, key_dim, entries),
        draw(batch, value_dim, entries),
        draw(batch, key_dim, pixels),
        draw(batch, value_dim, pixels),
    )
    return [t.to(device) for t in tensors]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_spec(backend_device, shape, dtype, generator):
    backend, device = backend_device
    # Keys scaled so that the softmax is neither flat nor one-hot.
    inputs = random_inputs(shape, dtype, device, generator, scale=1.5)
    expected = truth(*[t.cpu() for t in inputs])
    baseline = truth(*[t.cpu() for t in inputs], rounding=rounded_to(dtype))
    # Both forms, out= and allocated; under the interpreter one of them, the two in turn across the grid.
    both = not is_interpreted(backend, device)
    if both or on_diagonal((SHAPES.index(shape), DTYPES.index(dtype)), 2):
        out = poisoned(expected.shape, dtype, device)
        result = ops.memory_read(*inputs, out=out, backend=backend)
        assert result.data_ptr() == out.data_ptr(), "out= must be written in place and returned"
        assert_close_to_truth(result.cpu(), expected, baseline)
    if both or not on_diagonal((SHAPES.index(shape), DTYPES.index(dtype)), 2):
        allocated = ops.memory_read(*inputs, backend=backend)
        assert_close_to_truth(allocated.cpu(), expected, baseline)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_valid_length_ignores_the_rest(backend_device, dtype, generator):
    """Entries past n_valid (here NaN) must not be read; an empty memory reads zeros."""
    backend, device = backend_device
    batch, key_dim, value_dim, capacity, pixels = 4, 32, 72, 403, 29
    mem_key, mem_val, q_key, q_val = random_inputs(
        (batch, key_dim, value_dim, capacity, pixels), dtype, "cpu", generator
    )
    n_valid = torch.tensor([capacity, 1, 0, 250], dtype=torch.int32)
    for b, n in enumerate(n_valid.tolist()):
        mem_key[b, :, n:] = float("nan")
        mem_val[b, :, n:] = float("nan")
    expected = truth(mem_key, mem_val, q_key, q_val, n_valid)
    baseline = truth(mem_key, mem_val, q_key, q_val, n_valid, rounding=rounded_to(dtype))
    inputs = [t.to(device) for t in (mem_key, mem_val, q_key, q_val)]
    for lengths in (n_valid.to(device), n_valid.to(device, torch.int64)):
        out = poisoned(expected.shape, dtype, device)
        result = ops.memory_read(*inputs, n_valid=lengths, out=out, backend=backend)
        assert_close_to_truth(result.cpu(), expected, baseline)


def test_broadcast_query_as_the_model_passes_it(backend_device, generator):
    """The model reads one query for every object: an expanded (stride-0) batch."""
    backend, device = backend_device
    mem_key, mem_val, q_key, q_val = random_inputs((3, 32, 40, 130, 21), torch.float32, device, generator)
    q_key, q_val = q_key[:1].expand(3, -1, -1), q_val[:1].expand(3, -1, -1)
    expected = truth(*[t.cpu() for t in (mem_key, mem_val, q_key, q_val)])
    assert_close_to_truth(ops.memory_read(mem_key, mem_val, q_key, q_val, backend=backend).cpu(), expected)


def test_rejects_mismatched_shapes():
    keys, values = torch.randn(2, 32, 10), torch.randn(2, 64, 10)
    with pytest.raises(ValueError, match="query shapes"):
        ops.memory_read(keys, values, torch.randn(2, 16, 5), torch.randn(2, 64, 5))
    with pytest.raises(ValueError, match="must agree"):
        ops.memory_read(keys, torch.randn(2, 64, 11), torch.randn(2, 32, 5), torch.randn(2, 64, 5))
    with pytest.raises(ValueError, match="n_valid"):
        ops.memory_read(keys, values, torch.randn(2, 32, 5), torch.randn(2, 64, 5), n_valid=torch.ones(3))
    with pytest.raises(ValueError, match="float16"):
        ops.memory_read(keys.half(), values, torch.randn(2, 32, 5), torch.randn(2, 64, 5))


def test_unknown_backend_is_a_clear_error():
    keys, values = torch.randn(1, 32, 4), torch.randn(1, 8, 4)
    with pytest.raises(BackendUnavailableError, match="no such backend"):
        ops.memory_read(keys, values, torch.randn(1, 32, 3), torch.randn(1, 8, 3), backend="magic")
