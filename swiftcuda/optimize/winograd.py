"""Winograd 3x3 convolutions for float32 inference on the CPU.

Most of a SwiftNet step on a CPU is 3x3, stride-1 convolutions (the trunk's residual blocks, the
LAE's fusion layers, the key/value heads and the decoder). oneDNN computes them directly; the
extension's ``conv3x3`` computes them with NNPACK's Winograd F(6x6, 3x3) kernels, which need about
a fifth of the multiplications, split over the OpenMP threads (``csrc/cpu/winograd_conv.cpp``).
``benchmarks/bench_conv3x3.py`` measures the gain per convolution at SwiftNet's shapes and
``benchmarks/bench_fps.py`` per step (figures per CPU in benchmarks/RESULTS.md).

Winograd is exact in exact arithmetic; in float32 its results differ from a direct convolution by
about 1e-5 of the output's magnitude (the transforms add rounding), against about 1e-6 for oneDNN.
Labels agree on more than 99.99% of pixels (``bench_fps.py`` reports it), but it is not bitwise the
official computation, so it can be switched off (``PrepareOptions(winograd=False)``, ``--direct-convolutions``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Convolutions with fewer outputs than this from more inputs than this stay with oneDNN (the
#: 32-channel key heads on 256-channel maps): each thread then transforms the whole wide input for
#: few multiplications saved (`benchmarks/bench_conv3x3.py`). A narrow input is cheap to transform,
#: so the decoder's 2-channel prediction from 64 channels still gains.
MIN_CHANNELS = 64


def winograd_available() -> bool:
    """Whether the extension's ``conv3x3`` can run here (built, and torch has NNPACK)."""
    from swiftcuda.ops import extension

    return extension.status().winograd


def resolve_winograd(requested: bool | None, device: torch.device, dtype: torch.dtype, compile: bool = False) -> bool:
    """Whether an inference copy on ``device`` in ``dtype`` gets Winograd convolutions.

    Args:
        requested: True or False as the user asked, or None for the default: float32 on a CPU where
            the extension supports it, and not when compiling (TorchInductor then owns the
            convolutions).
        compile: whether the copy's convolutions will be compiled.

    Raises:
        ValueError: True was asked where Winograd convolutions cannot run.
    """
    if requested is None:
        return not compile and device.type == "cpu" and dtype == torch.float32 and winograd_available()
    if requested and (device.type != "cpu" or dtype != torch.float32):
        raise ValueError(
            f"Winograd convolutions run on the CPU in float32, not on {device.type} in {dtype}: drop winograd=True"
        )
    if requested and not winograd_available():
        raise ValueError(
            "Winograd convolutions need the swiftcuda extension built against a torch with NNPACK: drop winograd=True"
        )
    return requested


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1, padding-1 convolution computed by ``torch.ops.swiftcuda.conv3x3``.

    Takes (B, C, H, W) float32 CPU input in either memory format and returns (B, K, H, W) in the
    contiguous (NCHW) format, which is what NNPACK reads and writes; oneDNN convolutions downstream
    accept it as it is.

    Args:
        conv: the convolution to replace (its weights are copied).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_winograd_eligible(conv):
            raise ValueError(f"not a 3x3, stride-1, padding-1, ungrouped convolution: {conv}")
        self.weight = nn.Parameter(conv.weight.detach().contiguous(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32:
            return torch.ops.swiftcuda.conv3x3(x, self.weight, self.bias)
        return F.conv2d(x, self.weight, self.bias, padding=1)  # another device or dtype: the plain path

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, bias={self.bias is not None}"


def is_winograd_eligible(conv: nn.Module) -> bool:
    """A plain 3x3 convolution with stride 1, padding 1, no dilation or groups, zero padding."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def use_winograd_convolutions(model: nn.Module) -> int:
    """Replace every eligible convolution of ``model`` (in place) by a :class:`WinogradConv2d`.

    Returns:
        How many were replaced.
    """
    replaced = 0
    for name, child in model.named_children():
        if is_winograd_eligible(child) and (child.out_channels >= MIN_CHANNELS or child.in_channels <= MIN_CHANNELS):
            setattr(model, name, WinogradConv2d(child))
            replaced += 1
        else:
            replaced += use_winograd_convolutions(child)
    return replaced
