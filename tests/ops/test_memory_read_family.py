"""memory_read with the STM family's options (l2 affinity, shrinkage, selection, top-k, usage).

Every result is held against ``truth``, an independent float64 restatement written from the
definitions rather than from the reference's algebra: the l2 logit is the (selection-weighted)
negative squared distance ``-sum_c qe_c (mk_c - qk_c)^2`` itself (without a selection,
``|qk|^2 - |mk - qk|^2``), and the top-k weights come from ``torch.topk`` over each item's valid
entries alone, scattered into zeros.

Ties at the k-th place may go either way (a backend keeps whichever of two equal logits it meets
first): a query whose k-th and (k+1)-th largest true logits lie closer than rounding can separate
is removed from the inputs before the call (:func:`without_near_ties`), and each test asserts that
such queries stay rare, so the check never depends on how a backend breaks a tie.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from swiftcuda import ops
from swiftcuda.ops import reference
from tests.ops.interpreter import is_interpreted, on_diagonal, skip_unless_chosen
from tests.ops.tolerances import max_error, poisoned

#: The affinity variants: (affinity, with a selection, with a shrinkage).
VARIANTS = [("dot", False, False), ("l2", False, False), ("l2", True, False), ("l2", False, True), ("l2", True, True)]
TOP_KS = [None, 1, 7, 30, 64]
#: float32 results within this relative error of the float64 truth (the scale: the largest |value|).
FAMILY_RTOL = 1e-4
#: Two logits closer than this (relative to the largest |logit|) count as a tie: well above the
#: float32 rounding of a logit, and rare between random logits.
TIE_GAP = 2e-6


def variant_id(variant) -> str:
    affinity, selection, shrinkage = variant
    return affinity + ("+sel" if selection else "") + ("+shrink" if shrinkage else "")


def truth_logits(b: int, n: int, mem_key, q_key, *, affinity, scale=None, shrinkage=None, selection=None) -> Tensor:
    """(n, P) float64 logits of item b's first n entries, from the definitions."""
    keys, queries = mem_key[b, :, :n].double(), q_key[b].double()
    if affinity == "dot":
        logits = keys.T @ queries
    else:
        difference = keys.T[:, :, None] - queries[None, :, :]  # (n, Ck, P)
        if selection is None:
            logits = (queries * queries).sum(dim=0)[None, :] - (difference * difference).sum(dim=1)
        else:
            logits = -(selection[b].double()[None] * difference * difference).sum(dim=1)
        if shrinkage is not None:
            logits = logits * shrinkage[b, :n].double()[:, None]
    return logits * (1.0 / math.sqrt(mem_key.shape[1]) if scale is None else scale)


def truth(mem_key, mem_val, q_key, q_val=None, n_valid=None, *, top_k=None, **options) -> tuple[Tensor, Tensor]:
    """The read in float64: ((B, Cv or 2Cv, P) output, (B, N) usage)."""
    batch, _, capacity = mem_key.shape
    outputs, usage = [], torch.zeros(batch, capacity, dtype=torch.float64)
    for b in range(batch):
        n = capacity if n_valid is None else max(0, min(int(n_valid[b]), capacity))
        logits = truth_logits(b, n, mem_key, q_key, **options)
        weights = torch.zeros_like(logits)
        if n:
            best, chosen = logits.topk(n if top_k is None else min(top_k, n), dim=0)
            weights.scatter_(0, chosen, torch.softmax(best, dim=0))
        usage[b, :n] = weights.sum(dim=1)
        read = mem_val[b, :, :n].double() @ weights
        outputs.append(read if q_val is None else torch.cat([read, q_val[b].double()]))
    return torch.stack(outputs), usage


def near_tie_queries(mem_key, q_key, n_valid, top_k, **options) -> Tensor:
    """(P,) bool: queries of some item whose k-th and (k+1)-th largest valid logits nearly tie."""
    ties = torch.zeros(q_key.shape[2], dtype=torch.bool)
    if top_k is None:
        return ties
    for b in range(mem_key.shape[0]):
        n = mem_key.shape[2] if n_valid is None else max(0, min(int(n_valid[b]), mem_key.shape[2]))
        if n <= top_k:
            continue
        logits = truth_logits(b, n, mem_key, q_key, **options)
        ranked = logits.topk(top_k + 1, dim=0).values
        gap = ranked[top_k - 1] - ranked[top_k]
        ties |= gap <= TIE_GAP * logits.abs().max().clamp(min=1.0)
    return ties


def without_near_ties(inputs: dict, n_valid, top_k, **options) -> dict:
    """The inputs with the near-tie queries removed (at most a few of them: asserted)."""
    ties = near_tie_queries(inputs["mem_key"], inputs["q_key"], n_valid, top_k, **options)
    assert ties.sum() <= max(2, 0.05 * ties.numel()), f"{int(ties.sum())} of {ties.numel()} queries nearly tie"
    if not ties.any():
        return inputs
    keep = ~ties
    return {
        name: (t[:, :, keep] if name in ("q_key", "q_val", "selection") and t is not None else t)
        for name, t in inputs.items()
    }


def draw_inputs(batch, key_dim, value_dim, entries, pixels, generator, *, q_val=True, selection=False, shrinkage=False):
    """Random float64 inputs on the CPU; keys spread so the softmax is neither flat nor one-hot."""
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    inputs = {
        "mem_key": draw(batch, key_dim, entries),
        "mem_val": draw(batch, value_dim, entries),
        "q_key": draw(batch, key_dim, pixels),
        "q_val": draw(batch, value_dim, pixels) if q_val else None,
        "selection": torch.rand(batch, key_dim, pixels, generator=generator, dtype=torch.float64)
        if selection
        else None,
        "shrinkage": 1 + 2 * torch.rand(batch, entries, generator=generator, dtype=torch.float64)
        if shrinkage
        else None,
    }
    return inputs


def assert_family_close(
    result: Tensor, expected: Tensor, torch_result: Tensor | None = None, rtol: float = FAMILY_RTOL
) -> None:
    """Without ``torch_result``: float32 (or float64) within ``rtol`` of the largest |value|. With
    it (half-precision inputs): within twice PyTorch's own error on those inputs, plus the
    rounding of the result's dtype."""
    assert result.shape == expected.shape, f"shape {tuple(result.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(result).all(), "result holds NaN or inf (an element was not written?)"
    scale = max(expected.abs().max().item() if expected.numel() else 0.0, 1e-30)
    if torch_result is None:
        assert result.dtype in (torch.float32, torch.float64), "half precision needs PyTorch's own result"
        torch.testing.assert_close(result.double(), expected, rtol=rtol, atol=rtol * scale)
        return
    error, torch_error = max_error(result, expected), max_error(torch_result, expected)
    floor = torch.finfo(result.dtype).eps * max(scale, 1.0)
    assert error <= 2 * torch_error + floor, f"error {error:.3g} > 2 x PyTorch's {torch_error:.3g}"


def ragged_lengths(batch: int, entries: int, generator) -> Tensor:
    """Valid lengths for each item: the full capacity, one entry, and random lengths between."""
    lengths = torch.randint(1, entries + 1, (batch,), generator=generator)
    lengths[0] = entries
    if batch > 1:
        lengths[1] = 1
    return lengths


# ---------------------------------------------------------------------------------------------
# The reference is the spec: float64 reference == float64 truth.


@pytest.mark.parametrize("top_k", TOP_KS, ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("with_q_val", [True, False], ids=["q_val", "no_q_val"])
def test_reference_matches_the_definitions(variant, top_k, with_q_val, generator):
    affinity, selection, shrinkage = variant
    inputs = draw_inputs(3, 24, 20, 157, 37, generator, q_val=with_q_val, selection=selection, shrinkage=shrinkage)
    n_valid = torch.tensor([157, 1, 90])
    for b, n in enumerate(n_valid.tolist()):  # never read past n_valid: poison what lies there
        inputs["mem_key"][b, :, n:] = float("nan")
        inputs["mem_val"][b, :, n:] = float("nan")
        if shrinkage:
            inputs["shrinkage"][b, n:] = float("nan")
    options = dict(affinity=affinity, selection=inputs["selection"], shrinkage=inputs["shrinkage"])
    expected, expected_usage = truth(
        inputs["mem_key"], inputs["mem_val"], inputs["q_key"], inputs["q_val"], n_valid, top_k=top_k, **options
    )
    result, usage = reference.memory_read(
        inputs["mem_key"],
        inputs["mem_val"],
        inputs["q_key"],
        inputs["q_val"],
        n_valid,
        top_k=top_k,
        return_usage=True,
        **options,
    )
    assert_family_close(result, expected, rtol=1e-10)
    assert usage.dtype == torch.float64
    assert_family_close(usage, expected_usage, rtol=1e-10)
    assert (usage[1, 1:] == 0).all() and (usage[2, 90:] == 0).all(), "invalid entries must get no usage"


def test_reference_scale_and_out(generator):
    inputs = draw_inputs(2, 16, 8, 41, 13, generator, q_val=False, selection=True, shrinkage=True)
    options = dict(affinity="l2", scale=0.3, selection=inputs["selection"], shrinkage=inputs["shrinkage"], top_k=5)
    expected, _ = truth(inputs["mem_key"], inputs["mem_val"], inputs["q_key"], **options)
    out = torch.full((2, 8, 13), float("nan"), dtype=torch.float64)
    result = reference.memory_read(inputs["mem_key"], inputs["mem_val"], inputs["q_key"], None, None, out, **options)
    assert result is out
    assert_family_close(out, expected, rtol=1e-10)


def test_reference_usage_counts_each_query_once(generator):
    """Every query's weights sum to one, so an item's usage sums to its query count."""
    inputs = draw_inputs(2, 8, 4, 50, 11, generator)
    for top_k in (None, 3):
        _, usage = reference.memory_read(
            inputs["mem_key"],
            inputs["mem_val"],
            inputs["q_key"],
            None,
            torch.tensor([50, 2]),
            top_k=top_k,
            return_usage=True,
        )
        torch.testing.assert_close(usage.sum(dim=1), torch.full((2,), 11.0, dtype=torch.float64))
        if top_k is not None:
            assert ((usage > 0).sum(dim=1) <= 11 * top_k).all()


def test_reference_plain_read_unchanged(generator):
    """Without options the read is SwiftNet's: softmax of K^T Q / sqrt(Ck), then q_val appended."""
    inputs = draw_inputs(2, 16, 8, 33, 9, generator)
    expected, _ = truth(inputs["mem_key"], inputs["mem_val"], inputs["q_key"], inputs["q_val"], affinity="dot")
    result = reference.memory_read(inputs["mem_key"], inputs["mem_val"], inputs["q_key"], inputs["q_val"])
    assert_family_close(result, expected, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# Every backend against the truth, through the public op.

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
#: (batch, key channels, value channels, memory entries, query pixels): none a multiple of a block.
FAMILY_SHAPES = [(3, 24, 20, 601, 71), (1, 64, 40, 1333, 67), (2, 16, 8, 75, 5)]


def run_case(backend, device, shape, dtype, variant, top_k, with_q_val, generator, *, scale=None, lengths=None):
    affinity, selection, shrinkage = variant
    batch, _, _, entries, _ = shape
    inputs = draw_inputs(*shape, generator, q_val=with_q_val, selection=selection, shrinkage=shrinkage)
    inputs = {name: None if t is None else t.to(dtype).double() for name, t in inputs.items()}  # representable in dtype
    n_valid = ragged_lengths(batch, entries, generator) if lengths is None else torch.tensor(lengths)
    options = dict(affinity=affinity, scale=scale)
    inputs = without_near_ties(
        inputs, n_valid, top_k, **options, selection=inputs["selection"], shrinkage=inputs["shrinkage"]
    )
    options.update(selection=inputs["selection"], shrinkage=inputs["shrinkage"], top_k=top_k)
    expected, expected_usage = truth(
        inputs["mem_key"], inputs["mem_val"], inputs["q_key"], inputs["q_val"], n_valid, **options
    )

    low = {name: None if t is None else t.to(dtype) for name, t in inputs.items()}
    for b, n in enumerate(n_valid.tolist()):  # entries past n_valid must never be read
        low["mem_key"][b, :, n:] = float("nan")
        low["mem_val"][b, :, n:] = float("nan")
        if shrinkage:
            low["shrinkage"][b, n:] = float("nan")
    args = [low["mem_key"], low["mem_val"], low["q_key"], low["q_val"]]
    low_options = dict(options, selection=low["selection"], shrinkage=low["shrinkage"])
    torch_result, torch_usage = None, None
    if dtype != torch.float32:
        clean = [t if t is None else t.nan_to_num(0.0) for t in args]
        clean_options = dict(low_options, shrinkage=None if shrinkage is False else low["shrinkage"].nan_to_num(0.0))
        torch_result, torch_usage = ops.memory_read(
            *clean, n_valid=n_valid, return_usage=True, backend="reference", **clean_options
        )

    on_device = lambda t: None if t is None else t.to(device)  # noqa: E731
    device_options = dict(low_options, selection=on_device(low["selection"]), shrinkage=on_device(low["shrinkage"]))
    out = poisoned(expected.shape, dtype, device)
    result, usage = ops.memory_read(
        *map(on_device, args), n_valid=n_valid.to(device), out=out, return_usage=True, backend=backend, **device_options
    )
    assert result.data_ptr() == out.data_ptr(), "out= must be written in place and returned"
    assert usage.dtype == torch.float32 and usage.shape == (batch, entries)
    assert_family_close(result.cpu(), expected, torch_result)
    assert_family_close(usage.cpu(), expected_usage, torch_usage)
    for b, n in enumerate(n_valid.tolist()):
        assert (usage[b, n:] == 0).all(), "invalid entries must get no usage"
    if not is_interpreted(backend, device):
        # The allocating form without usage (under the interpreter, its own tests cover it).
        plain = ops.memory_read(*map(on_device, args), n_valid=n_valid.to(device), backend=backend, **device_options)
        assert_family_close(plain.cpu(), expected, torch_result)


@pytest.mark.parametrize("top_k", TOP_KS, ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("shape", FAMILY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float32_matches_truth(backend_device, shape, variant, top_k, generator):
    backend, device = backend_device
    positions = (FAMILY_SHAPES.index(shape), VARIANTS.index(variant), TOP_KS.index(top_k))
    skip_unless_chosen(
        backend, device, on_diagonal(positions, 5), "a fifth of the grid: every shape, variant and top-k"
    )
    with_q_val = (TOP_KS.index(top_k) + VARIANTS.index(variant)) % 2 == 0  # both forms, across the grid
    run_case(backend, device, shape, torch.float32, variant, top_k, with_q_val, generator)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("top_k", [None, 7, 30], ids=str)
@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[1], VARIANTS[4]], ids=variant_id)
def test_half_precision_within_twice_torchs_error(backend_device, variant, top_k, dtype, generator):
    backend, device = backend_device
    skip_unless_chosen(backend, device, top_k == 30 and dtype == torch.float16, "the fp16 top-30 row of the grid")
    run_case(backend, device, FAMILY_SHAPES[0], dtype, variant, top_k, top_k != 7, generator)


@pytest.mark.parametrize("top_k", [1, 30, 64], ids=str)
def test_fewer_valid_entries_than_top_k(backend_device, top_k, generator):
    """top_k at or past an item's valid entries is its full softmax; one valid entry reads it alone."""
    backend, device = backend_device
    run_case(
        backend, device, (4, 16, 12, 70, 23), torch.float32, VARIANTS[4], top_k, True, generator, lengths=[1, 2, 64, 70]
    )


def test_explicit_scale(backend_device, generator):
    backend, device = backend_device
    run_case(backend, device, (2, 32, 16, 300, 41), torch.float32, VARIANTS[2], 20, False, generator, scale=0.05)


def test_empty_memory_reads_zeros(backend_device, generator):
    backend, device = backend_device
    inputs = draw_inputs(2, 16, 8, 40, 9, generator, q_val=False)
    args = [inputs[name].float().to(device) for name in ("mem_key", "mem_val", "q_key")]
    n_valid = torch.tensor([0, 40], device=device)
    for top_k in (None, 5):
        result, usage = ops.memory_read(
            *args, affinity="l2", top_k=top_k, n_valid=n_valid, return_usage=True, backend=backend
        )
        assert (result[0] == 0).all() and (usage[0] == 0).all()
        torch.testing.assert_close(usage[1].sum().item(), 9.0, rtol=1e-5, atol=0)


def test_shared_keys_broadcast_over_objects(backend_device, generator):
    """The family reads one key memory for several objects' values: expanded (stride-0) keys."""
    backend, device = backend_device
    inputs = draw_inputs(1, 32, 16, 420, 29, generator, q_val=False, selection=True, shrinkage=True)
    objects = 3
    expand = lambda t: t.float().expand(objects, *t.shape[1:]).to(device)  # noqa: E731
    values = torch.randn(objects, 16, 420, generator=generator, dtype=torch.float64)
    options = dict(affinity="l2", top_k=30)
    ties = near_tie_queries(
        inputs["mem_key"],
        inputs["q_key"],
        None,
        30,
        affinity="l2",
        selection=inputs["selection"],
        shrinkage=inputs["shrinkage"],
    )
    keep = ~ties
    q_key, selection = inputs["q_key"][:, :, keep], inputs["selection"][:, :, keep]
    result = ops.memory_read(
        expand(inputs["mem_key"]),
        values.float().to(device),
        expand(q_key),
        selection=expand(selection),
        shrinkage=expand(inputs["shrinkage"]),
        backend=backend,
        **options,
    )
    for o in range(objects):
        expected, _ = truth(
            inputs["mem_key"], values[o : o + 1], q_key, selection=selection, shrinkage=inputs["shrinkage"], **options
        )
        assert_family_close(result[o : o + 1].cpu(), expected)


# ---------------------------------------------------------------------------------------------
# Argument checks: one clear message each.


def small_inputs():
    return torch.randn(2, 8, 10), torch.randn(2, 4, 10), torch.randn(2, 8, 5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(affinity="cosine"), "affinity must be one of"),
        (dict(top_k=0), "top_k must be an integer from 1 to 64"),
        (dict(top_k=65), "top_k must be an integer from 1 to 64"),
        (dict(top_k=True), "top_k must be an integer"),
        (dict(top_k=2.0), "top_k must be an integer"),
        (dict(scale=float("inf")), "scale must be a finite number"),
        (dict(scale=float("nan")), "scale must be a finite number"),
        (dict(affinity="l2", shrinkage=torch.rand(2, 9)), r"shrinkage must have shape \(2, 10\)"),
        (dict(affinity="l2", shrinkage=torch.rand(2, 10).double()), "shrinkage must be float32"),
        (dict(affinity="l2", selection=torch.rand(2, 8, 4)), r"selection must have shape \(2, 8, 5\)"),
        (dict(selection=torch.rand(2, 8, 5)), "belong to the l2 affinity"),
        (dict(shrinkage=torch.rand(2, 10)), "belong to the l2 affinity"),
        (dict(out=torch.empty(2, 8, 5)), r"out must have shape \(2, 4, 5\)"),
    ],
)
def test_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        ops.memory_read(*small_inputs(), **options)


def test_out_shape_with_q_val_is_unchanged():
    mem_key, mem_val, q_key = small_inputs()
    with pytest.raises(ValueError, match=r"out must have shape \(2, 8, 5\)"):
        ops.memory_read(mem_key, mem_val, q_key, torch.randn(2, 4, 5), top_k=3, out=torch.empty(2, 4, 5))
