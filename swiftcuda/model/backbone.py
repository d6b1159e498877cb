"""The query encoder: a ResNet trunk (stem, layer1..layer3) shared by query and memory encoding."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from swiftcuda.model.config import SwiftNetConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TrunkFeatures(NamedTuple):
    """Multi-scale features of one frame (batch 1 in inference).

    Attributes:
        r4: (B, C4, H/16, W/16) layer3 output.
        r3: (B, C3, H/8, W/8) layer2 output.
        r2: (B, C2, H/4, W/4) layer1 output.
        c1: (B, 64, H/2, W/2) stem output after batch norm and ReLU.
    """

    r4: Tensor
    r3: Tensor
    r2: Tensor
    c1: Tensor


class Encoder(nn.Module):
    """ResNet-18 or ResNet-50 trunk up to layer3 (1/16 resolution).

    Attribute names follow the official checkpoint (``conv1``, ``bn1``, ``res2`` .. ``res4``, and the
    ImageNet ``mean`` / ``std`` buffers) so that it loads strictly.
    """

    def __init__(self, config: SwiftNetConfig) -> None:
        super().__init__()
        resnet = models.resnet18() if config.variant == "r18" else models.resnet50()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.res2 = resnet.layer1
        self.res3 = resnet.layer2
        self.res4 = resnet.layer3
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, frame: Tensor) -> TrunkFeatures:
        """Encode frames.

        Args:
            frame: (B, 3, H, W) RGB in [0, 1], H and W multiples of 16, in any floating dtype
                (cast to the trunk's after normalisation).

        Returns:
            The trunk features. ``c1`` is taken after the stem's ReLU: the official code returns the
            batch-norm output, but torchvision's in-place ReLU has already rectified it by then, so
            the light-aggregation encoder receives the rectified map.
        """
        # Normalised in the frame's precision, then cast to the trunk's dtype and weight layout in
        # one pass (the engine passes float32 frames to a half-precision model).
        x = (frame - self.mean.to(frame.dtype)) / self.std.to(frame.dtype)
        weight = self.conv1.weight
        layout = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else torch.preserve_format
        x = x.to(dtype=weight.dtype, memory_format=layout)
        c1 = self.bn1(self.conv1(x)).relu_()  # in place: a fresh map, and a large one at 1/2 resolution
        r2 = self.res2(F.max_pool2d(c1, kernel_size=3, stride=2, padding=1))
        r3 = self.res3(r2)
        r4 = self.res4(r3)
        return TrunkFeatures(r4=r4, r3=r3, r2=r2, c1=c1)
