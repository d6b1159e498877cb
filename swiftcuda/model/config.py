"""Channel layouts of the SwiftNet variants.

The ResNet-18 layout is the official release's (``swiftnet_resnet18_old.pth``). No ResNet-50
checkpoint was released; its layout follows the paper (keys C/8 and values C/2 of the 1024-channel
layer3) and, for the parts the paper leaves open, the STM decoder it builds on (256-channel ASPP
and decoder).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SwiftNetConfig:
    """Channel counts of one SwiftNet variant.

    Attributes:
        variant: "r18" or "r50".
        c1_channels: stem output (1/2 resolution).
        r2_channels, r3_channels, r4_channels: ResNet layer1..layer3 outputs (1/4, 1/8, 1/16).
        key_dim: memory and query key channels (r4 / 8).
        value_dim: memory and query value channels (r4 / 2).
        aspp_dim: channels of each ASPP branch and of its output.
        decoder_dim: channels of the decoder's refinement path.
        rsp_factor: reversed sub-pixel factor taking a full-resolution mask to the r4 grid.
    """

    variant: str
    c1_channels: int
    r2_channels: int
    r3_channels: int
    r4_channels: int
    key_dim: int
    value_dim: int
    aspp_dim: int
    decoder_dim: int
    rsp_factor: int = 16

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this (the r4 grid's stride)."""
        return self.rsp_factor


CONFIGS: dict[str, SwiftNetConfig] = {
    "r18": SwiftNetConfig(
        variant="r18",
        c1_channels=64,
        r2_channels=64,
        r3_channels=128,
        r4_channels=256,
        key_dim=32,
        value_dim=128,
        aspp_dim=128,
        decoder_dim=64,
    ),
    "r50": SwiftNetConfig(
        variant="r50",
        c1_channels=64,
        r2_channels=256,
        r3_channels=512,
        r4_channels=1024,
        key_dim=128,
        value_dim=512,
        aspp_dim=256,
        decoder_dim=256,
    ),
}


def get_config(variant: str) -> SwiftNetConfig:
    """The configuration of ``variant`` ("r18" or "r50")."""
    try:
        return CONFIGS[variant]
    except KeyError:
        raise ValueError(f"unknown SwiftNet variant {variant!r}: choose 'r18' or 'r50'") from None
