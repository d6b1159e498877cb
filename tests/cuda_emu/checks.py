"""Checks of the emulated CUDA kernels against the float64 specs, shared by the tests and the
can-fail proofs (which must fail these same checks on broken kernels).

Each check draws fresh random inputs from ``generator``, runs one emulated op and asserts against
the float64 specs of tests/ops (half precision: within twice the error of PyTorch's rounding, restated
by those specs).
"""

from __future__ import annotations

import torch

from swiftcuda.ops.reference import novel_pixel_count
from tests.cuda_emu.harness import EmulatedKernels
from tests.ops.test_memory_read import truth as read_spec
from tests.ops.test_memory_update import TIE_TOLERANCE, locate_columns, similarity_truth
from tests.ops.test_rsp import truth as rsp_truth
from tests.ops.test_soft_aggregate import truth as soft_aggregate_truth
from tests.ops.tolerances import assert_close_to_truth, rounded_to


def _draw(generator: torch.Generator, dtype: torch.dtype, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator).to(dtype)


def check_memory_read(
    emu: EmulatedKernels,
    generator: torch.Generator,
    dtype: torch.dtype,
    batch: int,
    key_dim: int,
    value_dim: int,
    entries: int,
    pixels: int,
    lengths: list[int] | None,
    multiprocessors: int,
    expect_splits: int | None = None,
) -> None:
    """memory_read (B, Ck, N) x (B, Ck, P) with per-item valid lengths; NaN beyond the valid length."""
    mem_key = _draw(generator, dtype, batch, key_dim, entries)
    mem_val = _draw(generator, dtype, batch, value_dim, entries)
    q_key, q_val = _draw(generator, dtype, batch, key_dim, pixels), _draw(generator, dtype, batch, value_dim, pixels)
    n_valid = None if lengths is None else torch.tensor(lengths, dtype=torch.int32)
    if lengths is not None:  # entries past the valid length must never be read into the result
        for b, length in enumerate(lengths):
            mem_key[b, :, length:] = float("nan")
            mem_val[b, :, length:] = float("nan")
    out, splits = emu.memory_read(mem_key, mem_val, q_key, q_val, n_valid, multiprocessors=multiprocessors)
    if expect_splits is not None:
        assert (splits > 1) == (expect_splits > 1), f"the launcher chose {splits} splits"
    valid = lengths if lengths is not None else [entries] * batch
    for b, n in enumerate(valid):
        if n == 0:
            assert torch.equal(out[b, :value_dim], torch.zeros_like(out[b, :value_dim])), "an empty memory reads 0"
    truth = read_spec(mem_key, mem_val, q_key, q_val, valid)  # the spec per item, on its valid entries only
    assert_close_to_truth(out, truth, read_spec(mem_key, mem_val, q_key, q_val, valid, rounding=rounded_to(dtype)))


def check_memory_update(
    emu: EmulatedKernels,
    generator: torch.Generator,
    dtype: torch.dtype,
    key_dim: int,
    value_dim: int,
    capacity: int,
    starts: list[int],
    pixels: int,
    beta: float,
    multiprocessors: int,
    nan_pixels: tuple[int, ...] = (),
    expect_splits: int | None = None,
) -> None:
    """memory_update_ on capacity buffers: the k most novel pixels appended at each item's length.

    ``nan_pixels``: new pixels whose key holds a NaN (never the most novel, as in the reference).
    """
    batch = len(starts)
    key_buf = torch.full((batch, key_dim, capacity), float("nan"), dtype=dtype)
    val_buf = torch.full((batch, value_dim, capacity), float("nan"), dtype=dtype)
    for b, start in enumerate(starts):
        key_buf[b, :, :start] = _draw(generator, dtype, key_dim, start)
        val_buf[b, :, :start] = _draw(generator, dtype, value_dim, start)
    new_key = _draw(generator, dtype, batch, key_dim, pixels)
    new_val = _draw(generator, dtype, batch, value_dim, pixels)
    for pixel in nan_pixels:
        new_key[:, pixel % key_dim, pixel] = float("nan")
    before_keys, before_vals = key_buf.clone(), val_buf.clone()
    n_valid = torch.tensor(starts, dtype=torch.int64)
    splits = emu.memory_update_(key_buf, val_buf, n_valid, new_key, new_val, beta, multiprocessors=multiprocessors)
    if expect_splits is not None:
        assert (splits > 1) == (expect_splits > 1), f"the launcher chose {splits} splits"

    count = novel_pixel_count(pixels, beta)
    for b, start in enumerate(starts):
        fits = max(0, min(count, capacity - start))
        assert int(n_valid[b]) == start + fits, "n_valid must advance by the appended count"
        assert torch.equal(key_buf[b, :, :start], before_keys[b, :, :start]), "the memory must stay unchanged"
        assert torch.equal(val_buf[b, :, :start], before_vals[b, :, :start])
        assert key_buf[b, :, start + fits :].isnan().all() and val_buf[b, :, start + fits :].isnan().all(), (
            "nothing may be written past the appended entries"
        )
        if fits == 0:
            continue
        appended = key_buf[b, :, start : start + fits]
        # NaN columns compare unequal: locate them by their NaN pattern instead.
        finite = appended.isfinite().all(dim=0)
        assert finite.all(), "a pixel with a NaN key was appended, i.e. chosen as among the most novel"
        chosen = locate_columns(appended, new_key[b])
        assert (chosen[1:] > chosen[:-1]).all(), "appended pixels must be distinct and in ascending order"
        assert torch.equal(val_buf[b, :, start : start + fits], new_val[b][:, chosen]), "values must follow their keys"
        # The float64 choice: k lowest best matches (NaN sorted last), ties to the lower index, first `fits` kept.
        similarity = (
            similarity_truth(key_buf[b : b + 1, :, :start], new_key[b : b + 1])[0]
            if start > 0
            else torch.full((pixels,), float("-inf"), dtype=torch.float64)
        )
        order = torch.sort(similarity, stable=True).indices[:count]
        expected = order.sort().values[:fits]
        if not torch.equal(chosen, expected):  # allowed only for pixels tied with the k-th within rounding
            threshold = similarity.sort().values[count - 1]
            differing = torch.tensor(sorted(set(chosen.tolist()) ^ set(expected.tolist())))
            assert (similarity[differing] - threshold).abs().max() <= TIE_TOLERANCE, (
                f"chose {chosen.tolist()}, the float64 spec chooses {expected.tolist()}"
            )


def check_rsp(
    emu: EmulatedKernels,
    generator: torch.Generator,
    dtype: torch.dtype,
    objects: int,
    height: int,
    width: int,
    factor: int,
) -> None:
    """rsp (O, H, W) -> own and others (O, factor^2, H / factor, W / factor) against tests/ops' float64 truth."""
    probs = torch.rand(objects, height, width, generator=generator).to(dtype)
    own, others = emu.rsp(probs, factor)
    own_truth, others_truth = rsp_truth(probs, factor)
    _, others_baseline = rsp_truth(probs, factor, rounding=rounded_to(dtype))
    torch.testing.assert_close(own.double(), own_truth, rtol=0, atol=0)  # a pure permutation
    assert_close_to_truth(others, others_truth, others_baseline)


def check_soft_aggregate(
    emu: EmulatedKernels, generator: torch.Generator, dtype: torch.dtype, objects: int, height: int, width: int
) -> None:
    """soft_aggregate (O, H, W) -> (O + 1, H, W) float32, against tests/ops' float64 truth."""
    probs = torch.rand(objects, height, width, generator=generator)
    probs[:, ::3] = probs[:, ::3].round()  # exact 0 and 1 exercise the clamp
    probs = probs.to(dtype)
    result = emu.soft_aggregate(probs)
    torch.testing.assert_close(result.double(), soft_aggregate_truth(probs), rtol=1e-5, atol=1e-6)
