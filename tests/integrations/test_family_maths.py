"""swiftcuda.ops.memory_read with each family's options, on every backend, against family_maths."""

from __future__ import annotations

import pytest
import torch

from swiftcuda import ops
from swiftcuda.integrations._read import fused_read, objects_as_channels
from swiftcuda.ops import backends
from tests.integrations import family_maths as fm

KEY_DIM, VALUE_DIM = 64, 16


@pytest.fixture(params=["reference", "cpu", "triton"])
def backend(request) -> str:
    reason = backends.unavailable_reason(request.param, "cpu")
    if reason is not None:
        pytest.skip(f"backend {request.param!r} unavailable: {reason}")
    return request.param


def _draw(generator, batch, entries, pixels, top_k, *, selection, shrinkage):
    """Keys, query, selection, shrinkage whose k-th and (k+1)-th logits are apart at every query."""
    for _ in range(50):
        mem_key = torch.randn(batch, KEY_DIM, entries, generator=generator)
        q_key = torch.randn(batch, KEY_DIM, pixels, generator=generator)
        sel = torch.sigmoid(torch.randn(batch, KEY_DIM, pixels, generator=generator)) if selection else None
        shr = 1 + 2 * torch.rand(batch, entries, generator=generator) if shrinkage else None
        logits = fm.l2_logits(mem_key, q_key, shr, sel)
        if fm.kth_gap(logits, top_k) > 1e-3:
            return mem_key, q_key, sel, shr, logits
    raise AssertionError("could not draw inputs without near-ties")


@pytest.mark.parametrize(
    "family, batch, objects, entries, pixels, top_k, selection, shrinkage",
    [
        ("xmem", 1, 3, 203, 37, 30, True, True),
        ("cutie", 2, 2, 131, 29, 30, True, True),
        ("xmem without selection", 1, 1, 77, 23, 30, False, True),
        ("stcn", 1, 2, 150, 41, 20, False, False),
        ("full softmax (consolidation)", 1, 2, 90, 16, None, True, True),
    ],
)
def test_family_read_and_usage(
    backend, generator, family, batch, objects, entries, pixels, top_k, selection, shrinkage
):
    mem_key, q_key, sel, shr, logits = _draw(
        generator, batch, entries, pixels, top_k, selection=selection, shrinkage=shrinkage
    )
    values = torch.randn(batch, objects * VALUE_DIM, entries, generator=generator)
    expected, expected_usage = fm.read(values, fm.softmax_weights(logits, top_k))
    readout, usage = ops.memory_read(
        mem_key,
        values,
        q_key,
        affinity="l2",
        shrinkage=shr,
        selection=sel,
        top_k=top_k,
        return_usage=True,
        backend=backend,
    )
    assert readout.shape == (batch, objects * VALUE_DIM, pixels) and readout.dtype == torch.float32
    assert usage.shape == (batch, entries) and usage.dtype == torch.float32
    message = f"{family}, seed {generator.initial_seed()}"
    torch.testing.assert_close(readout.double(), expected, rtol=1e-4, atol=1e-5, msg=message)
    torch.testing.assert_close(usage.double(), expected_usage, rtol=1e-4, atol=1e-5, msg=message)


def test_stm_dot_read_with_query_values(backend, generator):
    mem_key = torch.randn(3, KEY_DIM, 111, generator=generator)
    values = torch.randn(3, VALUE_DIM, 111, generator=generator)
    q_key = torch.randn(3, KEY_DIM, 30, generator=generator)
    q_val = torch.randn(3, VALUE_DIM, 30, generator=generator)
    expected = fm.read(values, torch.softmax(fm.dot_logits(mem_key, q_key), dim=1))[0]
    got = ops.memory_read(mem_key, values, q_key, q_val, backend=backend)
    torch.testing.assert_close(got[:, :VALUE_DIM].double(), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(got[:, VALUE_DIM:], q_val)


def test_objects_as_channels_equals_one_read_per_object(generator):
    """Why the integrations read a group's objects as channels: one top-k, the same readouts."""
    mem_key, q_key, sel, shr, _ = _draw(generator, 1, 120, 25, 30, selection=True, shrinkage=True)
    per_object = torch.randn(4, VALUE_DIM, 120, generator=generator)
    together, _ = fused_read(mem_key, objects_as_channels(per_object), q_key, shrinkage=shr, selection=sel, top_k=30)
    one_by_one = torch.cat(
        [
            fused_read(mem_key, per_object[o : o + 1], q_key, shrinkage=shr, selection=sel, top_k=30)[0]
            for o in range(4)
        ],
        1,
    )
    torch.testing.assert_close(together, one_by_one, rtol=1e-6, atol=1e-6)


def test_fused_read_runs_in_the_widest_dtype_without_autocast(generator):
    mem_key, q_key, sel, shr, _ = _draw(generator, 1, 64, 12, None, selection=True, shrinkage=True)
    values = torch.randn(1, VALUE_DIM, 64, generator=generator)
    mem_key, values, sel = mem_key.half(), values.half(), sel.half()  # as a model under autocast hands them
    expected = fm.read(values, fm.softmax_weights(fm.l2_logits(mem_key, q_key, shr, sel)))[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        readout, usage = fused_read(mem_key, values, q_key, shrinkage=shr.unsqueeze(1), selection=sel, usage=True)
    assert readout.dtype == torch.float32 and usage.shape == (1, 64)
    # float32 throughout: a bfloat16 or half read would be off by about 1e-2.
    torch.testing.assert_close(readout.double(), expected, rtol=1e-4, atol=1e-5)
