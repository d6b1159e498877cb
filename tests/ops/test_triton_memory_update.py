"""Triton memory update beyond the shared op tests: key widths, long memories, memory splits,
single pixels and entries, empty memories, signed-zero ties, agreement with the reference, and
the in-place form's freedom from host synchronisation.

Runs on the CPU under TRITON_INTERPRET=1 (small sizes) and on CUDA when a GPU is present.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch

from swiftcuda import ops
from swiftcuda.ops.reference import novel_pixel_count
from tests.ops.interpreter import on_diagonal, skip_unless_chosen
from tests.ops.test_memory_update import assert_valid_choice, locate_columns, random_memory, similarity_truth


@contextlib.contextmanager
def no_host_reads():
    """Fail on any Python-level read of a tensor's value (``.item()``, ``bool(t)``, ...).

    Each is a device-to-host synchronisation on a GPU; the fused path must make none.
    """

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host (a device synchronisation)")

    with contextlib.ExitStack() as stack:
        for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
            stack.enter_context(mock.patch.object(torch.Tensor, name, refuse))
        yield


def update_in_place(key_buf, val_buf, n_valid, new_key, new_val, beta, num_splits=0):
    """The Triton in-place update, with the split count forced when num_splits > 0."""
    from swiftcuda.ops import _triton_ops

    _triton_ops.memory_update_in_place(key_buf, val_buf, n_valid, new_key, new_val, beta, num_splits)


KEY_DIMS = [16, 32, 64, 128]
SPLITS = [0, 3]


@pytest.mark.parametrize("key_dim", KEY_DIMS)
@pytest.mark.parametrize("num_splits", SPLITS)
def test_key_widths_and_memory_splits(device, key_dim, num_splits, generator):
    from swiftcuda.ops import _triton_ops

    chosen = on_diagonal((KEY_DIMS.index(key_dim), SPLITS.index(num_splits)), 2)
    skip_unless_chosen("triton", device, chosen, "each key width once, both split counts in turn")

    batch, value_dim, entries, pixels, beta = 2, 24, 611, 150, 0.1
    mem_key, mem_val, new_key, new_val = random_memory(
        (batch, key_dim, value_dim, entries, pixels), torch.float32, generator
    )
    keys, values = _triton_ops.memory_update(
        *[t.to(device) for t in (mem_key, mem_val, new_key, new_val)], beta, num_splits
    )
    keys, values = keys.cpu(), values.cpu()
    count = novel_pixel_count(pixels, beta)
    assert torch.equal(keys[:, :, :entries], mem_key) and torch.equal(values[:, :, :entries], mem_val)
    similarity = similarity_truth(mem_key, new_key)
    for b in range(batch):
        chosen = locate_columns(keys[b, :, entries:], new_key[b])
        assert_valid_choice(chosen, similarity[b], count)
        assert torch.equal(values[b, :, entries:], new_val[b][:, chosen])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_memory_of_several_thousand_entries_in_place(device, dtype, generator):
    batch, key_dim, value_dim, capacity, pixels = 2, 32, 16, 5000, 97
    mem_key, mem_val, new_key, new_val = random_memory((batch, key_dim, value_dim, capacity, pixels), dtype, generator)
    lengths = [4321, capacity - 3]  # the second has room for 3 of its 10 pixels
    for b, n in enumerate(lengths):
        mem_key[b, :, n:] = float("nan")
        mem_val[b, :, n:] = float("nan")
    key_buf, val_buf = mem_key.to(device), mem_val.to(device)
    n_valid = torch.tensor(lengths, dtype=torch.int64, device=device)
    update_in_place(key_buf, val_buf, n_valid, new_key.to(device), new_val.to(device), 0.1, num_splits=4)
    count = novel_pixel_count(pixels, 0.1)
    assert n_valid.cpu().tolist() == [lengths[0] + count, capacity]
    key_buf, val_buf = key_buf.cpu(), val_buf.cpu()
    n = lengths[0]
    chosen = locate_columns(key_buf[0, :, n : n + count], new_key[0])
    assert_valid_choice(chosen, similarity_truth(mem_key[:1, :, :n], new_key[:1])[0], count)
    assert torch.equal(val_buf[0, :, n : n + count], new_val[0][:, chosen])
    assert key_buf[0, :, n + count :].isnan().all()
    # The clipped item keeps the lowest-index pixels of its choice (the highest go first).
    n = lengths[1]
    full_choice = ops.memory_update(
        mem_key[1:, :, :n], mem_val[1:, :, :n], new_key[1:], new_val[1:], beta=0.1, backend="reference"
    )[1]
    assert torch.equal(val_buf[1, :, n:], full_choice[0, :, n : n + 3])


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_one_pixel_and_one_entry(device, beta, generator):
    mem_key, mem_val, new_key, new_val = random_memory((3, 32, 8, 1, 1), torch.float32, generator)
    keys, values = ops.memory_update(
        *[t.to(device) for t in (mem_key, mem_val, new_key, new_val)], beta=beta, backend="triton"
    )
    assert torch.equal(keys.cpu(), torch.cat([mem_key, new_key], dim=2))
    assert torch.equal(values.cpu(), torch.cat([mem_val, new_val], dim=2))


def test_empty_memory_takes_the_first_pixels(device, generator):
    """No valid entry: every similarity is -inf, all tie, the lowest indices win."""
    _, _, new_key, new_val = random_memory((2, 16, 8, 1, 45), torch.float32, generator)
    key_buf = torch.full((2, 16, 30), float("nan"), device=device)
    val_buf = torch.full((2, 8, 30), float("nan"), device=device)
    n_valid = torch.zeros(2, dtype=torch.int32, device=device)
    update_in_place(key_buf, val_buf, n_valid, new_key.to(device), new_val.to(device), 0.2)
    count = novel_pixel_count(45, 0.2)
    assert n_valid.cpu().tolist() == [count, count]
    assert torch.equal(key_buf[:, :, :count].cpu(), new_key[:, :, :count])
    assert torch.equal(val_buf[:, :, :count].cpu(), new_val[:, :, :count])
    assert key_buf[:, :, count:].isnan().all()


def test_zero_keys_tie_at_zero_and_go_by_index(device, generator):
    """Zero keys have cosine 0 (not NaN) to everything, whatever the sign of that zero."""
    mem_key, mem_val, new_key, new_val = random_memory((1, 32, 8, 20, 40), torch.float32, generator)
    zero_pixels = [3, 11, 12, 25, 39]
    mem_key[:, :, : 40 - 20] = 0.0  # zero memory keys too
    mem_key = torch.cat([mem_key, new_key.clone()], dim=2)  # every non-zero new key has a match of 1
    mem_val = torch.cat([mem_val, new_val.clone()], dim=2)
    new_key[:, :, zero_pixels] = 0.0
    new_key[:, 0, zero_pixels] = -0.0
    beta = 0.1  # count = 4 of the 5 zero pixels
    expected = ops.memory_update(mem_key, mem_val, new_key, new_val, beta=beta, backend="reference")
    result = ops.memory_update(
        *[t.to(device) for t in (mem_key, mem_val, new_key, new_val)], beta=beta, backend="triton"
    )
    chosen = locate_columns(result[1][0, :, mem_key.shape[2] :].cpu(), new_val[0])
    assert chosen.tolist() == zero_pixels[:4]
    assert torch.equal(result[0].cpu(), expected[0]) and torch.equal(result[1].cpu(), expected[1])


@pytest.mark.parametrize("trial", range(3))
def test_in_place_equals_the_reference_exactly(device, trial, generator):
    """Random float32 memories: no near-ties, so the buffers match the reference bit for bit."""
    batch, key_dim, value_dim, capacity, pixels = 3, 32, 20, 400, 77
    mem_key, mem_val, new_key, new_val = random_memory(
        (batch, key_dim, value_dim, capacity, pixels), torch.float32, generator
    )
    lengths = torch.tensor([0, 150, capacity - 4], dtype=torch.int32)
    expected = [mem_key.clone(), mem_val.clone(), lengths.clone()]
    ops.memory_update_(*expected, new_key, new_val, beta=0.1, backend="reference")
    got = [mem_key.to(device), mem_val.to(device), lengths.to(device)]
    update_in_place(*got, new_key.to(device), new_val.to(device), 0.1, num_splits=trial + 1)
    for mine, theirs in zip(got, expected):
        assert torch.equal(mine.cpu(), theirs)


def test_in_place_update_makes_no_host_read(device, generator):
    mem_key, mem_val, new_key, new_val = random_memory((2, 32, 16, 300, 50), torch.float32, generator)
    key_buf, val_buf, new_key, new_val = [t.to(device) for t in (mem_key, mem_val, new_key, new_val)]
    n_valid = torch.tensor([120, 7], dtype=torch.int32, device=device)
    with no_host_reads():
        ops.memory_update_(key_buf, val_buf, n_valid, new_key, new_val, beta=0.1, backend="triton")
        ops.memory_read(key_buf, val_buf, new_key, new_val, n_valid=n_valid, backend="triton")
    assert n_valid.cpu().tolist() == [125, 12]


def test_reference_in_place_update_does_read_the_host():
    """The check above is able to fail: the reference reads n_valid on the host."""
    mem_key, mem_val, new_key, new_val = random_memory(
        (1, 8, 4, 10, 5), torch.float32, torch.Generator().manual_seed(0)
    )
    with pytest.raises(AssertionError, match="host"), no_host_reads():
        ops.memory_update_(mem_key, mem_val, torch.tensor([3]), new_key, new_val, beta=0.5, backend="reference")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_update_and_read_capture_in_a_cuda_graph_without_syncs(generator):
    """On a GPU: no synchronisation (sync debug mode), and a captured graph's replay is bit for bit
    the eager step from the same state."""
    from swiftcuda.ops import triton_backend  # noqa: F401  (registers torch.ops.swiftcuda_triton)

    device = torch.device("cuda")
    mem_key, mem_val, new_key, new_val = random_memory((2, 32, 64, 3000, 200), torch.float16, generator)
    key_buf, val_buf = mem_key.to(device), mem_val.to(device)
    new_key, new_val = new_key.to(device), new_val.to(device)
    n_valid = torch.tensor([100, 2500], dtype=torch.int32, device=device)
    out = torch.empty((2, 128, 200), dtype=torch.float16, device=device)

    def step():
        torch.ops.swiftcuda_triton.memory_update_(key_buf, val_buf, n_valid, new_key, new_val, 0.1)
        torch.ops.swiftcuda_triton.memory_read.into(key_buf, val_buf, new_key, new_val, n_valid, out)

    step()  # compile the kernels outside the checks
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    state = (key_buf, val_buf, n_valid)
    before = [t.clone() for t in state]
    graph.replay()
    replayed = [t.clone() for t in (*state, out)]
    assert (replayed[2] - before[2]).tolist() == [20, 20]
    for tensor, saved in zip(state, before):  # back to the state before the replay, then the step eagerly
        tensor.copy_(saved)
    out.fill_(float("nan"))
    step()
    for name, got, want in zip(("keys", "values", "lengths", "read"), replayed, (*state, out)):
        assert torch.equal(got, want), f"the replayed {name} differ from the eager step's"
