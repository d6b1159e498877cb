"""soft_aggregate: every backend against a float64 computation of the spec."""

from __future__ import annotations

import pytest
import torch

from swiftcuda import ops

SHAPES = [(1, 1, 1), (1, 17, 23), (3, 45, 61), (6, 8, 129)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def truth(object_probs: torch.Tensor) -> torch.Tensor:
    """Odds of background (product of complements) and objects, clamped, normalised."""
    p = object_probs.double()
    eps = 1e-7
    # The spec clamps in float32, where 1 - 1e-7 rounds to 0.99999988: clamp at that value.
    high = float(torch.tensor(1 - eps, dtype=torch.float32))
    classes = torch.cat([torch.prod(1 - p, dim=0, keepdim=True), p]).clamp(eps, high)
    odds = classes / (1 - classes)
    return odds / odds.sum(dim=0, keepdim=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_spec(backend_device, shape, dtype, generator):
    backend, device = backend_device
    probs = torch.rand(*shape, generator=generator)
    probs[:, ::3] = probs[:, ::3].round()  # exact 0 and 1 exercise the clamp
    probs = probs.to(dtype)
    result = ops.soft_aggregate(probs.to(device), backend=backend)
    assert result.dtype == torch.float32, "probabilities are always float32"
    # The output is float32 whatever the input: its error is float32 rounding of the spec.
    torch.testing.assert_close(result.cpu().double(), truth(probs), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        result.sum(0).cpu().double(), torch.ones(shape[1:], dtype=torch.float64), rtol=0, atol=1e-5
    )


def test_rejects_no_objects():
    with pytest.raises(ValueError, match="at least one object"):
        ops.soft_aggregate(torch.rand(0, 4, 4))
