"""The decoder: from the memory readout at 1/16 back to a 1/4-resolution two-class logit map."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from swiftcuda.model.post_ops import conv_post


class ResBlock(nn.Module):
    """Residual block whose skip path carries the rectified input.

    The official block applies an in-place ReLU to its input before the first convolution, so the
    identity it adds back is ``relu(x)``, not ``x``. Official weights were trained that way; this
    block computes ``relu(x) + conv2(relu(conv1(relu(x))))`` explicitly.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        # In place, as the official block's in-place ReLU was: every caller passes a fresh map.
        x = x.relu_()
        return conv_post(self.conv2, conv_post(self.conv1, x, relu=True), residual=x)


class Refine(nn.Module):
    """Merge a skip feature map with the upsampled coarser decoder state."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.convFS = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.ResFS = ResBlock(channels)
        self.ResMM = ResBlock(channels)

    def forward(self, skip: Tensor, coarse: Tensor) -> Tensor:
        """skip (1 or B, C_in, 2h, 2w), coarse (B, C, h, w) -> (B, C, 2h, 2w).

        The skip path does not depend on the object, so a batch-1 skip map is processed once and
        broadcast, where the official code repeats it for every object.
        """
        s = self.ResFS(self.convFS(skip))
        up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
        return self.ResMM(up.add_(s))  # up is fresh and has the objects' batch; s may be broadcast


class Decoder(nn.Module):
    """ASPP output, r3 and r2 -> two-class logits at 1/4 resolution."""

    def __init__(self, in_channels: int, channels: int, r3_channels: int, r2_channels: int) -> None:
        super().__init__()
        self.convFM = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.ResMM = ResBlock(channels)
        self.RF3 = Refine(r3_channels, channels)
        self.RF2 = Refine(r2_channels, channels)
        self.pred2 = nn.Conv2d(channels, 2, 3, padding=1)

    def forward(self, x: Tensor, r3: Tensor, r2: Tensor) -> Tensor:
        """x (B, C_in, h, w), r3 (B, C3, 2h, 2w), r2 (B, C2, 4h, 4w) -> (B, 2, 4h, 4w) logits.

        r3 and r2 may have batch 1 and are then broadcast over the objects.
        """
        m4 = self.ResMM(self.convFM(x))
        m3 = self.RF3(r3, m4)
        m2 = self.RF2(r2, m3)
        return self.pred2(m2.relu_())
