"""Key/value projection heads and the ASPP block between the memory read and the decoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KeyValue(nn.Module):
    """3x3 convolutions projecting features to a key and a value map."""

    def __init__(self, in_channels: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.Key = nn.Conv2d(in_channels, key_dim, 3, padding=1)
        self.Value = nn.Conv2d(in_channels, value_dim, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, h, w) -> key (B, Ck, h, w), value (B, Cv, h, w)."""
        return self.Key(x), self.Value(x)


class _AtrousBranch(nn.Module):
    """One dilated convolution of ASPP, without bias (the official layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.atrous_conv(x).relu_()


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with dilations 1, 2, 4, 8 and no image-level branch."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.aspp1 = _AtrousBranch(in_channels, channels, 1, dilation=1)
        self.aspp2 = _AtrousBranch(in_channels, channels, 3, dilation=2)
        self.aspp3 = _AtrousBranch(in_channels, channels, 3, dilation=4)
        self.aspp4 = _AtrousBranch(in_channels, channels, 3, dilation=8)
        self.conv1 = nn.Conv2d(4 * channels, channels, 1, bias=False)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, h, w) -> (B, channels, h, w)."""
        branches = torch.cat([self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)], dim=1)
        return self.dropout(self.conv1(branches).relu_())
