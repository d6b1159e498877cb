"""The model's precision: "auto" picks what this device runs fastest without losing the masks.

- On a GPU: float16 (tensor cores; SwiftNet's activations stay well inside its range).
- On a CPU with native bfloat16 (AVX512-BF16 or AMX, see :mod:`swiftcuda.cpu`): bfloat16, which
  oneDNN runs faster than float32 with at least 99% of labels unchanged
  (``benchmarks/bench_fps.py`` measures both).
- On any other CPU: float32. There PyTorch computes bfloat16 convolutions in slow fallback loops
  (``benchmarks/bench_fps.py`` shows the cost), so an explicit bfloat16 still runs, as asked,
  with one :class:`SlowPrecisionWarning` that names the cost and the fix.
"""

from __future__ import annotations

import warnings

import torch

from swiftcuda.cpu import CpuInfo, cpu_info

__all__ = ["PRECISIONS", "SlowPrecisionWarning", "auto_dtype", "dtype_name", "resolve_precision", "warn_if_slow"]

#: The names the CLI and :func:`resolve_precision` accept, besides "auto".
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """ "bfloat16" for torch.bfloat16: how tables and messages name a dtype."""
    return str(dtype).removeprefix("torch.")


class SlowPrecisionWarning(UserWarning):
    """A precision that this device computes much more slowly than float32."""


def auto_dtype(device: torch.device, cpu: CpuInfo | None = None) -> torch.dtype:
    """The dtype "auto" picks on ``device`` (``cpu``: this CPU's features, for tests to simulate)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if (cpu_info() if cpu is None else cpu).native_bf16 else torch.float32
    return torch.float32


def resolve_precision(
    precision: str | torch.dtype, device: torch.device | str, cpu: CpuInfo | None = None
) -> torch.dtype:
    """The dtype for ``precision`` ("auto", "fp32", "fp16", "bf16" or a torch dtype) on ``device``.

    Warns once (:func:`warn_if_slow`) when an explicit choice is slow on this device.

    Raises:
        ValueError: an unknown precision name or an unsupported dtype.
    """
    device = torch.device(device)
    if isinstance(precision, torch.dtype):
        dtype = precision
    elif precision == "auto":
        return auto_dtype(device, cpu)
    elif precision in PRECISIONS:
        dtype = PRECISIONS[precision]
    else:
        raise ValueError(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)} or a torch dtype")
    if dtype not in PRECISIONS.values():
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    warn_if_slow(device, dtype, cpu)
    return dtype


def slow_precision_reason(device: torch.device, dtype: torch.dtype, cpu: CpuInfo | None = None) -> str | None:
    """Why ``dtype`` on ``device`` runs much more slowly than float32, or None."""
    if device.type != "cpu" or dtype == torch.float32:
        return None
    info = cpu_info() if cpu is None else cpu
    if dtype == torch.bfloat16 and not info.native_bf16:
        return (
            f"bfloat16 on this CPU ({info.model}, {info.isa}) has no native bfloat16 convolutions: PyTorch "
            "falls back to slow loops, several times slower than float32; use precision 'auto' or 'fp32'"
        )
    if dtype == torch.float16 and not info.native_fp16:
        return (
            f"float16 on this CPU ({info.model}, {info.isa}) has no native float16 convolutions: they run "
            "slower than float32; use precision 'auto' or 'fp32'"
        )
    return None


def warn_if_slow(device: torch.device, dtype: torch.dtype, cpu: CpuInfo | None = None) -> None:
    """Emit one :class:`SlowPrecisionWarning` per process when ``dtype`` is slow on ``device``.

    The warning is issued from this one line, so Python's default filter shows it once however many
    models and segmenters ask.
    """
    reason = slow_precision_reason(device, dtype, cpu)
    if reason is not None:
        warnings.warn(reason, SlowPrecisionWarning, stacklevel=1)
