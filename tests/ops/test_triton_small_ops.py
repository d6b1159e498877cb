"""Triton rsp, soft_aggregate and frame_variation beyond the shared op tests: factors that are not
powers of two, many objects, strided inputs, agreement with the float32 reference.

Runs on the CPU under TRITON_INTERPRET=1 (small sizes) and on CUDA when a GPU is present.
"""

from __future__ import annotations

import pytest
import torch

from swiftcuda import ops
from tests.ops.test_frame_variation import truth as variation_truth
from tests.ops.test_rsp import truth as rsp_truth
from tests.ops.tolerances import assert_close_to_truth, rounded_to


@pytest.mark.parametrize(
    "objects, height, width, factor", [(2, 9, 15, 3), (9, 16, 16, 16), (1, 5, 7, 1), (3, 12, 40, 4)]
)
def test_rsp_any_factor_and_many_objects(device, objects, height, width, factor, generator):
    probs = torch.rand(objects, height, width, generator=generator)
    own, others = ops.rsp(probs.to(device), factor=factor, backend="triton")
    own_truth, others_truth = rsp_truth(probs, factor)
    assert own.is_contiguous() and others.is_contiguous()
    torch.testing.assert_close(own.cpu().double(), own_truth, rtol=0, atol=0)
    assert_close_to_truth(others.cpu(), others_truth)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_rsp_of_a_strided_view(device, dtype, generator):
    """Every object's map strided inside a larger tensor (as a slice of the padded masks is)."""
    big = torch.rand(4, 40, 70, generator=generator).to(dtype)
    probs = big[1:, 4:36, 3:67:2]  # (3, 32, 32), last dim stride 2
    own, others = ops.rsp(probs.to(device), factor=16, backend="triton")
    own_truth, others_truth = rsp_truth(probs, 16)
    torch.testing.assert_close(own.cpu().double(), own_truth, rtol=0, atol=0)
    assert_close_to_truth(others.cpu(), others_truth, rsp_truth(probs, 16, rounding=rounded_to(dtype))[1])


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 33, 65), (7, 20, 31)], ids=str)
def test_soft_aggregate_matches_the_float32_reference(device, shape, generator):
    probs = torch.rand(*shape, generator=generator)
    probs[:, ::4] = probs[:, ::4].round()
    expected = ops.soft_aggregate(probs, backend="reference")
    result = ops.soft_aggregate(probs.to(device), backend="triton").cpu()
    # Normalised odds against PyTorch's softmax of log-odds: float32 rounding apart.
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)


def test_soft_aggregate_of_a_strided_view(device, generator):
    probs = torch.rand(3, 30, 50, generator=generator).transpose(1, 2)  # (3, 50, 30), not contiguous
    expected = ops.soft_aggregate(probs, backend="reference")
    result = ops.soft_aggregate(probs.to(device), backend="triton").cpu()
    assert result.is_contiguous()
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)


def test_frame_variation_mixed_dtypes_and_views(device, generator):
    """A float16 frame with float32 masks, both as views; counts exact."""
    grid = lambda *s: torch.randint(0, 9, s, generator=generator).float() / 8  # noqa: E731
    frame, previous = grid(3, 50, 41).half(), grid(3, 50, 41).half()
    probs, previous_probs = grid(5, 41, 50).transpose(1, 2), grid(5, 50, 41)
    th_f, th_m = 0.2 + 1 / 48, 0.3 + 1 / 48
    result = ops.frame_variation(
        *[t.to(device) for t in (frame, previous, probs, previous_probs)],
        frame_threshold=th_f,
        mask_threshold=th_m,
        backend="triton",
    )
    assert result.dtype == torch.float32 and result.shape == (2,)
    assert result.cpu().tolist() == variation_truth(frame, previous, probs, previous_probs, th_f, th_m)
