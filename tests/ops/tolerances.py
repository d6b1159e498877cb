"""Precision rules shared by the op tests.

float32 results must match a float64 computation to about 1e-5 relative, the absolute part scaled
by the output's largest magnitude (a weighted sum near zero carries the rounding of its terms, not
of its value).

Half-precision results must stay within twice the error that PyTorch itself makes in the same
precision, the rule flash-attention's tests use. PyTorch's error is not measured on the reference
backend (a bug in the reference's half-precision path would then widen the bound it is held to):
each test restates the op's float64 spec with a ``rounding`` applied where PyTorch's low-precision
path rounds (:func:`rounded_to`), and that baseline is itself checked to stay within a few units in
the last place of the float64 answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

FLOAT32_RTOL = 2e-5
FLOAT32_ATOL = 2e-6
#: How far (in eps of the dtype, scaled by the answer's largest magnitude) the low-precision
#: baseline may be from the float64 answer: the op's few roundings, the logits' amplified by the
#: memory read's softmax (under 2 eps on the op tests' inputs).
BASELINE_ULPS = 4


def max_error(result: Tensor, truth: Tensor) -> float:
    return (result.double() - truth.double()).abs().max().item() if truth.numel() else 0.0


def rounded_to(dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """Rounding of float64 values to ``dtype`` (round to nearest even), kept in float64."""
    return lambda t: t.to(dtype).to(torch.float64)


def assert_close_to_truth(result: Tensor, truth: Tensor, baseline: Tensor | None = None) -> None:
    """Check ``result`` against the float64 ``truth``.

    Args:
        result: what the backend computed, in its dtype.
        truth: the float64 answer.
        baseline: for half precision, the test's float64 spec computed with the rounding of
            PyTorch's low-precision path (``rounding=rounded_to(result.dtype)``), in float64.
    """
    assert result.shape == truth.shape, f"shape {tuple(result.shape)} != {tuple(truth.shape)}"
    assert torch.isfinite(result).all(), "result holds NaN or inf (an element was not written?)"
    scale = truth.abs().max().item() if truth.numel() else 0.0
    if result.dtype == torch.float32:
        atol = max(FLOAT32_ATOL, FLOAT32_RTOL * scale)
        torch.testing.assert_close(result.double(), truth, rtol=FLOAT32_RTOL, atol=atol)
        return
    assert baseline is not None, "half precision needs the low-precision baseline to compare with"
    assert baseline.dtype == torch.float64 and baseline.shape == truth.shape
    eps = torch.finfo(result.dtype).eps
    baseline_error = max_error(baseline, truth)
    assert baseline_error <= BASELINE_ULPS * eps * max(scale, 1.0), (
        f"the {result.dtype} baseline is {baseline_error:.3g} from float64, over {BASELINE_ULPS} ulp: "
        "it does not compute the spec"
    )
    error = max_error(result, truth)
    # A tiny floor: where the baseline is exact by luck, allow the half-precision rounding of the output.
    floor = eps * max(scale, 1.0)
    assert error <= 2 * baseline_error + floor, (
        f"error {error:.3g} > 2 x the {result.dtype} baseline's {baseline_error:.3g}"
    )


def poisoned(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An output buffer full of NaN: any element a kernel forgets to write shows up."""
    return torch.full(shape, float("nan"), dtype=dtype, device=device)
