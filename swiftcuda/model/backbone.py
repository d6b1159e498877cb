"""The query encoder: a ResNet trunk (stem, layer1..layer3) shared by query and memory encoding.

The trunk is written here rather than taken from torchvision (which is then not needed): its
modules, their names (``conv1``, ``bn1``, ``downsample.0`` / ``.1`` ...) and its arithmetic are
those of torchvision's ResNet v1.5 (stride in the 3x3 convolution of a bottleneck), so the official
checkpoints load strictly and compute the same values.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swiftcuda.model.config import SwiftNetConfig
from swiftcuda.model.post_ops import conv_post

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a skip connection (ResNet-18/34): (B, C, H, W) -> (B, planes, H/s, W/s)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convolutions and a skip connection (ResNet-50):
    (B, C, H, W) -> (B, 4 planes, H/s, W/s)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


#: Variant -> (block type, blocks in layer1, layer2, layer3); layer4 is not part of the trunk.
RESNET_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int]]] = {
    "r18": (BasicBlock, (2, 2, 2)),
    "r50": (Bottleneck, (3, 4, 6)),
}


def _make_layer(
    block: type[BasicBlock] | type[Bottleneck], in_channels: int, planes: int, blocks: int, stride: int
) -> nn.Sequential:
    """One ResNet stage; the first block changes resolution and width (1x1 projection on its skip)."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    layers = [block(in_channels, planes, stride, downsample)]
    layers += [block(out_channels, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _init_resnet(module: nn.Module) -> None:
    """ResNet initialisation (He et al.): convolutions fan-out normal, batch norms identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


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
        block, depths = RESNET_LAYOUTS[config.variant]
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.res2 = _make_layer(block, 64, 64, depths[0], stride=1)
        self.res3 = _make_layer(block, 64 * block.expansion, 128, depths[1], stride=2)
        self.res4 = _make_layer(block, 128 * block.expansion, 256, depths[2], stride=2)
        _init_resnet(self)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, frame: Tensor) -> TrunkFeatures:
        """Encode frames.

        Args:
            frame: (B, 3, H, W) RGB in [0, 1], H and W multiples of 16, in any floating dtype
                (cast to the trunk's after normalisation).

        Returns:
            The trunk features. ``c1`` is taken after the stem's ReLU: the official code returns the
            batch-norm output, but torchvision's in-place ReLU (which the official code runs) has
            already rectified it by then, so the light-aggregation encoder receives the rectified map.
        """
        # Normalised in the frame's precision, then cast to the trunk's dtype and weight layout in
        # one pass (the engine passes float32 frames to a half-precision model).
        x = (frame - self.mean.to(frame.dtype)) / self.std.to(frame.dtype)
        weight = self.conv1.weight
        layout = (
            torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else torch.preserve_format
        )
        x = x.to(dtype=weight.dtype, memory_format=layout)
        if isinstance(self.bn1, nn.Identity):  # folded for inference: conv and ReLU, fused where possible
            c1 = conv_post(self.conv1, x, relu=True)
        else:
            c1 = self.bn1(self.conv1(x)).relu_()  # in place: a fresh map, and a large one at 1/2 resolution
        r2 = self.res2(F.max_pool2d(c1, kernel_size=3, stride=2, padding=1))
        r3 = self.res3(r2)
        r4 = self.res4(r3)
        return TrunkFeatures(r4=r4, r3=r3, r2=r2, c1=c1)
