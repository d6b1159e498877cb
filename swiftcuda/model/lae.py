"""The light-aggregation encoder (LAE): memory features from cached query features and masks.

The frame is not encoded a second time for the memory: the query trunk's features (c1, r2, r3, r4)
are fused with the object's mask and the union of the other objects' masks. The masks enter at full
resolution (a strided 7x7 convolution) and at 1/16 through reversed sub-pixel (the mask unshuffled
by 16 into 256 channels) followed by a 3x3 convolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swiftcuda.model.backbone import TrunkFeatures
from swiftcuda.model.config import SwiftNetConfig
from swiftcuda.model.post_ops import conv_post


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class LAE(nn.Module):
    """Light-aggregation encoder; attribute names follow the official checkpoint."""

    def __init__(self, config: SwiftNetConfig) -> None:
        super().__init__()
        rsp_channels = config.rsp_factor**2
        self.conv1_m = nn.Conv2d(1, config.c1_channels, 7, stride=2, padding=3, bias=False)
        self.conv1_o = nn.Conv2d(1, config.c1_channels, 7, stride=2, padding=3, bias=False)
        self.conv2_m = _conv3x3(rsp_channels, config.r4_channels)
        self.conv2_o = _conv3x3(rsp_channels, config.r4_channels)
        self.conv_fusion1 = _conv3x3(config.c1_channels, config.r2_channels, stride=2)
        self.conv_fusion2 = _conv3x3(config.r2_channels, config.r3_channels, stride=2)
        self.conv_fusion3 = _conv3x3(config.r3_channels, config.r4_channels, stride=2)
        self.conv_fusion4 = _conv3x3(config.r4_channels, config.r4_channels)
        self.conv_fusion5 = _conv3x3(config.r4_channels, config.r4_channels)
        # Inference-only: each pair of mask convolutions as one convolution over both masks.
        self.paired_full: nn.Conv2d | None = None
        self.paired_small: nn.Conv2d | None = None

    def pair_mask_convolutions(self) -> None:
        """Merge conv1_m / conv1_o and conv2_m / conv2_o into single convolutions (inference only).

        ``conv_m(own) + conv_o(others)`` equals one convolution of the channel-concatenated masks
        with the concatenated weights: one pass over the output instead of two, and one add fewer.
        """
        for name, (own, others) in {
            "paired_full": (self.conv1_m, self.conv1_o),
            "paired_small": (self.conv2_m, self.conv2_o),
        }.items():
            paired = nn.Conv2d(
                own.in_channels * 2,
                own.out_channels,
                own.kernel_size,
                stride=own.stride,
                padding=own.padding,
                bias=False,
            ).to(device=own.weight.device, dtype=own.weight.dtype)
            paired.weight.data = torch.cat([own.weight.data, others.weight.data], dim=1)
            setattr(self, name, paired)

    def _mask_term(
        self,
        paired: nn.Module | None,
        own_conv: nn.Module,
        others_conv: nn.Module,
        own: Tensor,
        others: Tensor | None,
        residual: Tensor | None = None,
        relu: bool = False,
    ) -> Tensor:
        """The masks' convolutions [+ residual] [-> ReLU] (fused where the inference copy fused them)."""
        if others is None:  # no other objects: others_conv(zeros) == 0
            return conv_post(own_conv, own, residual, relu)
        if paired is not None:
            return conv_post(paired, torch.cat([own, others], dim=1), residual, relu)
        out = own_conv(own) + others_conv(others)
        if residual is not None:
            out = out.add_(residual)
        return out.relu_() if relu else out

    def forward(
        self,
        features: TrunkFeatures,
        own: Tensor,
        others: Tensor | None,
        own_small: Tensor,
        others_small: Tensor | None,
    ) -> Tensor:
        """Fuse one frame's trunk features with each object's masks.

        Args:
            features: trunk features of the frame, batch 1 (broadcast over objects).
            own: (O, 1, H, W) each object's probability map.
            others: (O, 1, H, W) union of the other objects' maps.
            own_small, others_small: (O, 256, H/16, W/16) the same maps after reversed sub-pixel.
            ``others`` and ``others_small`` may be None when there is one object (their maps are
            zero): the other-object convolutions are then skipped.

        Returns:
            (O, C4, H/16, W/16) memory features.
        """
        # Sums and ReLUs run in place on the fresh per-object maps (the shared trunk features are
        # broadcast into them): no extra full-size allocations, and the same sums, since a + b == b + a.
        # conv_post: conv -> add -> ReLU in one oneDNN call where the inference copy fused them.
        x = self._mask_term(self.paired_full, self.conv1_m, self.conv1_o, own, others, features.c1, relu=True)
        x = conv_post(self.conv_fusion1, x, features.r2, relu=True)
        x = conv_post(self.conv_fusion2, x, features.r3, relu=True)
        small = self._mask_term(self.paired_small, self.conv2_m, self.conv2_o, own_small, others_small)
        x = conv_post(self.conv_fusion3, x, small.add_(features.r4), relu=True)
        x = conv_post(self.conv_fusion4, x, relu=True)
        return conv_post(self.conv_fusion5, x, relu=True)
