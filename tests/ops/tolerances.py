"""Precision rules shared by the op tests.

float32 results must match a float64 computation to about 1e-5 relative, the absolute part scaled
by the output's largest magnitude (a weighted sum near zero carries the rounding of its terms, not
of its value). Half-precision results
must stay within twice the error that PyTorch itself makes in the same precision (the reference
backend run in that dtype), the rule flash-attention's tests use.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOAT32_RTOL = 2e-5
FLOAT32_ATOL = 2e-6


def max_error(result: Tensor, truth: Tensor) -> float:
    return (result.double() - truth.double()).abs().max().item() if truth.numel() else 0.0


def assert_close_to_truth(result: Tensor, truth: Tensor, torch_result: Tensor | None = None) -> None:
    """Check ``result`` against the float64 ``truth``.

    Args:
        result: what the backend computed, in its dtype.
        truth: the float64 answer.
        torch_result: for half precision, plain PyTorch's answer in the same dtype.
    """
    assert result.shape == truth.shape, f"shape {tuple(result.shape)} != {tuple(truth.shape)}"
    assert torch.isfinite(result).all(), "result holds NaN or inf (an element was not written?)"
    if result.dtype == torch.float32:
        scale = truth.abs().max().item() if truth.numel() else 0.0
        atol = max(FLOAT32_ATOL, FLOAT32_RTOL * scale)
        torch.testing.assert_close(result.double(), truth, rtol=FLOAT32_RTOL, atol=atol)
        return
    assert torch_result is not None, "half precision needs PyTorch's own result to compare with"
    torch_error = max_error(torch_result, truth)
    error = max_error(result, truth)
    # A tiny floor: where PyTorch is exact by luck, allow the half-precision rounding of the output.
    floor = torch.finfo(result.dtype).eps * max(truth.abs().max().item(), 1.0)
    assert error <= 2 * torch_error + floor, f"error {error:.3g} > 2 x PyTorch's {torch_error:.3g}"


def poisoned(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An output buffer full of NaN: any element a kernel forgets to write shows up."""
    return torch.full(shape, float("nan"), dtype=dtype, device=device)
