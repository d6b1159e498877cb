"""rsp (reversed sub-pixel): every backend against a float64 computation of the spec."""

from __future__ import annotations

import pytest
import torch

from swiftcuda import ops
from tests.ops.tolerances import assert_close_to_truth, rounded_to

# (objects, height, width, factor): sizes that are odd multiples of the factor.
SHAPES = [(1, 16, 16, 16), (3, 48, 80, 16), (5, 32, 112, 16), (2, 12, 20, 4), (4, 6, 10, 2)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def truth(probs: torch.Tensor, factor: int, rounding=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Own map and clamped union of the others, unshuffled with explicit index arithmetic.

    ``rounding`` (:func:`tests.ops.tolerances.rounded_to` a half dtype) rounds the union once, as
    PyTorch's low-precision path does (a wide sum, then the dtype): the half-precision baseline.
    """
    r = rounding or (lambda t: t)
    probs = probs.double()
    objects, height, width = probs.shape
    others = r(
        torch.stack(
            [sum((probs[j] for j in range(objects) if j != o), torch.zeros_like(probs[o])) for o in range(objects)]
        ).clamp(0, 1)
    )

    def unshuffle(maps):
        out = torch.empty(objects, factor * factor, height // factor, width // factor, dtype=torch.float64)
        for i in range(factor):
            for j in range(factor):
                out[:, i * factor + j] = maps[:, i::factor, j::factor]
        return out

    return unshuffle(probs), unshuffle(others)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_spec(backend_device, shape, dtype, generator):
    backend, device = backend_device
    objects, height, width, factor = shape
    # Uniform draws: the others' sum often exceeds one, so the clamp is exercised.
    probs = torch.rand(objects, height, width, generator=generator).to(dtype)
    own_truth, others_truth = truth(probs, factor)
    _, others_baseline = truth(probs, factor, rounding=rounded_to(dtype))
    own, others = ops.rsp(probs.to(device), factor=factor, backend=backend)
    assert own.dtype == dtype and others.dtype == dtype
    torch.testing.assert_close(own.cpu().double(), own_truth, rtol=0, atol=0)  # a pure permutation
    assert_close_to_truth(others.cpu(), others_truth, others_baseline)


def test_rejects_sizes_not_divisible():
    with pytest.raises(ValueError, match="multiples of the factor"):
        ops.rsp(torch.rand(2, 20, 32), factor=16)
