"""One convolution with what follows it (a residual add, a ReLU) in one oneDNN call on a CPU.

See :mod:`swiftcuda.optimize.pointwise_fusion` for why and where the engine uses it. Model code calls
:func:`~swiftcuda.model.post_ops.conv_post` for every ``conv -> [+ residual] -> [ReLU]`` it
computes, so that the same forward runs the plain ops on a plain convolution and one fused call on
a :class:`FusedConv`.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FusedConv", "pointwise_fusion_available"]

log = logging.getLogger(__name__)


def pointwise_fusion_available(dtype: torch.dtype) -> bool:
    """Whether this torch build runs oneDNN's fused convolutions in ``dtype`` on this CPU (one tiny
    call of each kind; a build without them raises)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return False
    x = torch.ones(1, 2, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.ones(2, 2, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
    try:
        torch.ops.mkldnn._convolution_pointwise(x, weight, None, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
        torch.ops.mkldnn._convolution_pointwise.binary(
            x, x, weight, None, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], ""
        )
    except RuntimeError as error:
        log.info("oneDNN fused convolutions are not available in %s here (%s)", dtype, error)
        return False
    return True


class FusedConv(nn.Module):
    """``conv(x) [+ residual] [-> ReLU]`` in one oneDNN call on a CPU.

    Holds the convolution's (folded) weight and bias, not the ``nn.Conv2d``, so that the CPU
    convolution tuner, which replaces plain convolutions, leaves it as it is.

    Args:
        conv: the convolution (weights shared, not copied).
        relu: apply a ReLU last.
    """

    #: :func:`~swiftcuda.model.post_ops.conv_post` hands this module the residual and the ReLU.
    fuses_post_ops = True

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.relu = relu

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) [, residual (B, K, H', W')] -> (B, K, H', W'), in the input's layout."""
        unary = "relu" if self.relu else None
        # A residual broadcast over the batch (the LAE adds batch-1 trunk features to every object's
        # map) is not fused: oneDNN runs that binary post-op about 100x slower (measured, 2 objects).
        broadcast = residual is not None and residual.shape[0] != x.shape[0]
        if x.device.type == "cpu" and not broadcast and not (torch.is_grad_enabled() and self.weight.requires_grad):
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x,
                    self.weight,
                    self.bias,
                    self.padding,
                    self.stride,
                    self.dilation,
                    self.groups,
                    unary or "none",
                    [],
                    "",
                )
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x,
                residual,
                self.weight,
                self.bias,
                self.padding,
                self.stride,
                self.dilation,
                self.groups,
                "add",
                1.0,
                unary,
                [],
                "",
            )
        out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            # in place on the fresh output unless the residual is the larger (autograd allows it: a
            # convolution's backward does not read its output)
            out = out.add_(residual) if residual.shape[0] <= out.shape[0] else out + residual
        return out.relu_() if self.relu else out

    def extra_repr(self) -> str:
        out_channels, in_channels, kh, kw = self.weight.shape
        return f"{in_channels}->{out_channels} {kh}x{kw} stride={self.stride}, relu={self.relu}"
