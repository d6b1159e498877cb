"""The Triton kernels of the STM family's read (l2 affinity, selection, shrinkage, scale, top-k lists
merged across memory splits, gather, usage, the readout alone) against the float64 truth.

Runs on the CPU under TRITON_INTERPRET=1 (small ragged shapes: pixels, entries and channels that
are no multiple of a block) and on CUDA when a GPU is present. Outputs and usage are poisoned
before each call; entries past each item's valid length hold NaN.
"""

from __future__ import annotations

import pytest
import torch
from torch.library import opcheck

from tests.ops.family_checks import check_family_read
from tests.ops.test_memory_read_family import (
    VARIANTS,
    assert_family_close,
    draw_inputs,
    truth,
    variant_id,
)
from tests.ops.tolerances import poisoned


def triton_runner(device: torch.device, num_splits: int = 0):
    """run(inputs, n_valid, options) through the registered op, with the split count forced when > 0."""

    def run(inputs, n_valid, options):
        on = lambda t: None if t is None else t.to(device)
        batch, value_dim, entries = inputs["mem_val"].shape
        channels = value_dim * (1 if inputs["q_val"] is None else 2)
        out = poisoned((batch, channels, inputs["q_key"].shape[2]), inputs["mem_key"].dtype, device)
        usage = poisoned((batch, entries), torch.float32, device)
        torch.ops.swiftcuda_triton.memory_read_family_into(
            on(inputs["mem_key"]),
            on(inputs["mem_val"]),
            on(inputs["q_key"]),
            on(inputs["q_val"]),
            on(n_valid),
            out,
            usage,
            on(inputs["shrinkage"]),
            on(inputs["selection"]),
            options["affinity"],
            options["scale"],
            options["top_k"],
            num_splits,
        )
        return out, usage

    return run


#: (B, Ck, Cv, N, P): no dimension a multiple of a block; N long enough for three splits.
SHAPE = (3, 24, 20, 301, 37)


@pytest.mark.parametrize("top_k", [None, 7], ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_float32_every_affinity(device, variant, top_k, generator):
    index = VARIANTS.index(variant)
    splits = 3 if (index + (top_k is None)) % 2 else 0  # forced splits and automatic ones across the grid
    check_family_read(
        triton_runner(device, splits), SHAPE, torch.float32, variant, top_k, generator, with_q_val=index % 2 == 0
    )


@pytest.mark.parametrize("top_k", [1, 30, 64], ids=str)
def test_top_k_at_and_past_the_valid_entries(device, top_k, generator):
    """One valid entry reads it alone; top_k at or past an item's valid entries is its full softmax."""
    check_family_read(
        triton_runner(device, 2),
        (4, 16, 12, 70, 23),
        torch.float32,
        VARIANTS[4],
        top_k,
        generator,
        lengths=[1, 2, 64, 70],
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("top_k", [None, 7], ids=str)
def test_half_precision_within_twice_torchs_error(device, dtype, top_k, generator):
    check_family_read(triton_runner(device, 2), SHAPE, dtype, VARIANTS[4], top_k, generator, with_q_val=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_xmem_like_channels(device, dtype, generator):
    """XMem's key and value widths (64 / 512) with top-30, selection, shrinkage and usage, small N and P."""
    check_family_read(
        triton_runner(device), (1, 64, 512, 150, 21), dtype, VARIANTS[4], 30, generator, with_q_val=False, scale=0.125
    )


def test_objects_sharing_keys_get_their_own_values(device, generator):
    """Stride-0 keys, queries, selection and shrinkage over three objects' values: one top-k sweep
    serves every object, each gathers its own values and gets its own usage."""
    inputs = draw_inputs(1, 16, 12, 200, 19, generator, q_val=False, selection=True, shrinkage=True)
    objects, options = 3, {"affinity": "l2", "top_k": 5}
    values = torch.randn(objects, 12, 200, generator=generator, dtype=torch.float64)
    expand = lambda t: t.float().expand(objects, *t.shape[1:]).to(device)
    out = poisoned((objects, 12, 19), torch.float32, device)
    usage = poisoned((objects, 200), torch.float32, device)
    torch.ops.swiftcuda_triton.memory_read_family_into(
        expand(inputs["mem_key"]),
        values.float().to(device),
        expand(inputs["q_key"]),
        None,
        None,
        out,
        usage,
        expand(inputs["shrinkage"]),
        expand(inputs["selection"]),
        "l2",
        None,
        5,
    )
    for o in range(objects):
        expected, expected_usage = truth(
            inputs["mem_key"],
            values[o : o + 1],
            inputs["q_key"],
            selection=inputs["selection"],
            shrinkage=inputs["shrinkage"],
            **options,
        )
        assert_family_close(out[o : o + 1].cpu(), expected)
        assert_family_close(usage[o : o + 1].cpu(), expected_usage)


def test_output_view_is_written_in_place(device, generator):
    """out may be a view into a larger buffer: the read and the query values land in it, nothing outside."""
    inputs = draw_inputs(2, 16, 10, 90, 13, generator, selection=True)
    big = poisoned((2, 2 * 10 + 4, 13 + 3), torch.float32, device)
    out = big[:, 2 : 2 + 20, 1 : 1 + 13]
    args = [inputs[name].float().to(device) for name in ("mem_key", "mem_val", "q_key", "q_val")]
    torch.ops.swiftcuda_triton.memory_read_family_into(
        *args, None, out, None, None, inputs["selection"].float().to(device), "l2", 0.2, 4
    )
    expected, _ = truth(
        inputs["mem_key"],
        inputs["mem_val"],
        inputs["q_key"],
        inputs["q_val"],
        affinity="l2",
        selection=inputs["selection"],
        scale=0.2,
        top_k=4,
    )
    assert_family_close(out.cpu(), expected)
    outside = torch.ones(big.shape, dtype=torch.bool)
    outside[:, 2 : 2 + 20, 1 : 1 + 13] = False
    assert big.cpu()[outside].isnan().all(), "the kernels wrote outside the output view"


def test_empty_memory_reads_zeros(device, generator):
    inputs = draw_inputs(2, 16, 8, 40, 9, generator, q_val=False)
    args = [inputs[name].float().to(device) for name in ("mem_key", "mem_val", "q_key")]
    n_valid = torch.tensor([0, 40], device=device)
    for top_k in (None, 5):
        out, usage = poisoned((2, 8, 9), torch.float32, device), poisoned((2, 40), torch.float32, device)
        torch.ops.swiftcuda_triton.memory_read_family_into(
            *args, None, n_valid, out, usage, None, None, "l2", None, top_k
        )
        assert (out[0] == 0).all() and (usage[0] == 0).all()
        torch.testing.assert_close(usage[1].sum().item(), 9.0, rtol=1e-5, atol=0)


def test_opcheck(device, generator):
    inputs = draw_inputs(2, 16, 8, 40, 9, generator, selection=True, shrinkage=True)
    t = {name: value.float().to(device) for name, value in inputs.items()}
    n_valid = torch.tensor([40, 17], device=device)
    op = torch.ops.swiftcuda_triton.memory_read_family_into.default
    opcheck(
        op,
        (
            t["mem_key"],
            t["mem_val"],
            t["q_key"],
            t["q_val"],
            n_valid,
            torch.empty(2, 16, 9, device=device),
            torch.empty(2, 40, device=device),
            t["shrinkage"],
            t["selection"],
            "l2",
            None,
            3,
            0,
        ),
    )
    opcheck(
        op,
        (
            t["mem_key"],
            t["mem_val"],
            t["q_key"],
            None,
            None,
            torch.empty(2, 8, 9, device=device),
            None,
            None,
            None,
            "dot",
            0.5,
            None,
            2,
        ),
    )


def test_the_registered_op_takes_the_declared_schema_arguments(device, generator):
    """torch.ops.swiftcuda_triton.memory_read_family: the schema's arguments and results (what the
    backend table calls), the usage empty unless asked for."""
    from swiftcuda.ops import triton_backend  # noqa: F401  (registers the ops)

    inputs = draw_inputs(2, 16, 8, 60, 9, generator, q_val=False, selection=True, shrinkage=True)
    t = {name: None if value is None else value.float().to(device) for name, value in inputs.items()}
    op = torch.ops.swiftcuda_triton.memory_read_family
    out, usage = op(
        t["mem_key"], t["mem_val"], t["q_key"], None, None, t["shrinkage"], t["selection"], "l2", None, 6, True
    )
    expected, expected_usage = truth(
        inputs["mem_key"],
        inputs["mem_val"],
        inputs["q_key"],
        affinity="l2",
        top_k=6,
        selection=inputs["selection"],
        shrinkage=inputs["shrinkage"],
    )
    assert_family_close(out.cpu(), expected)
    assert_family_close(usage.cpu(), expected_usage)
    plain, no_usage = op(t["mem_key"], t["mem_val"], t["q_key"], None, None, None, None, "l2", None, 6, False)
    assert plain.shape == (2, 8, 9) and no_usage.numel() == 0
