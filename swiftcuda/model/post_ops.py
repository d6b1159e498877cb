"""``conv -> [+ residual] -> [ReLU]``, the pattern the model's forward computes after most convolutions.

Model code calls :func:`conv_post` for each of them, so that the same forward runs the plain ops
on an ``nn.Conv2d`` and one fused call on a convolution that applies its add and ReLU itself (a
module whose class sets ``fuses_post_ops = True`` and whose ``relu`` attribute says whether it ends
with a ReLU; :class:`swiftcuda.optimize.fused_conv.FusedConv` is the one model preparation puts
there).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["conv_post"]


def conv_post(conv: nn.Module, x: Tensor, residual: Tensor | None = None, relu: bool = False) -> Tensor:
    """``conv(x) [+ residual] [-> ReLU]``: ``conv(x, residual)`` when ``conv`` fuses its post-ops
    (made with the same ``relu``), else the convolution, then the add and the ReLU in place on its
    fresh output. ``residual`` may have batch 1 and is then broadcast.

    Args:
        x: (B, C, H, W) input.
        residual: optional (B or 1, K, H', W') added to the convolution's (B, K, H', W') output.

    Returns:
        (B, K, H', W').
    """
    if getattr(conv, "fuses_post_ops", False):
        if conv.relu != relu:
            raise ValueError(f"this fused convolution applies relu={conv.relu}, the caller asks relu={relu}")
        return conv(x, residual)
    out = conv(x)
    if residual is not None:
        out = out.add_(residual)
    return out.relu_() if relu else out
