"""SwiftNet: query encoding, memory encoding through the LAE, memory read and decoding.

The module's parameter names are the official checkpoint's, so ``swiftnet_resnet18_old.pth`` loads
strictly. The three hot operations (memory read, memory update, reversed sub-pixel) go through
:mod:`swiftcuda.ops`, whose backend is chosen per call.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swiftcuda import ops
from swiftcuda.model.backbone import Encoder, TrunkFeatures
from swiftcuda.model.config import SwiftNetConfig, get_config
from swiftcuda.model.decoder import Decoder
from swiftcuda.model.heads import ASPP, KeyValue
from swiftcuda.model.lae import LAE


class QueryEncoding(NamedTuple):
    """One frame encoded as a query.

    Attributes:
        features: the trunk features, reused by the LAE when the frame is memorised.
        key: (1, Ck, h, w) query key at 1/16 resolution.
        value: (1, Cv, h, w) query value.
    """

    features: TrunkFeatures
    key: Tensor
    value: Tensor

    def frame(self, index: int) -> QueryEncoding:
        """The encoding of frame ``index`` of a batch, keeping batch size 1 (views, no copies)."""
        pick = slice(index, index + 1)
        features = TrunkFeatures(*(f[pick] for f in self.features))
        return QueryEncoding(features=features, key=self.key[pick], value=self.value[pick])


class SwiftNet(nn.Module):
    """SwiftNet (Wang et al., CVPR 2021) with a ResNet-18 or ResNet-50 trunk."""

    def __init__(self, variant: str = "r18") -> None:
        super().__init__()
        config = get_config(variant)
        self.config: SwiftNetConfig = config
        #: The shorter side these weights segment best at, when known (set by
        #: :func:`swiftcuda.weights.load_model`); what ``Segmenter(internal_size="auto")`` runs at.
        self.recommended_internal_size: int | None = None
        self.LAE = LAE(config)
        self.Encoder = Encoder(config)
        self.KV_M_r4 = KeyValue(config.r4_channels, config.key_dim, config.value_dim)
        self.KV_Q_r4 = KeyValue(config.r4_channels, config.key_dim, config.value_dim)
        self.aspp = ASPP(2 * config.value_dim, config.aspp_dim)
        self.Decoder = Decoder(config.aspp_dim, config.decoder_dim, config.r3_channels, config.r2_channels)

    def encode_query(self, frame: Tensor) -> QueryEncoding:
        """Encode a frame as a query.

        Args:
            frame: (1, 3, H, W) RGB in [0, 1] in the model's dtype; H, W multiples of 16.
        """
        features = self.Encoder(frame)
        key, value = self.KV_Q_r4(features.r4)
        return QueryEncoding(features=features, key=key, value=value)

    def encode_memory(
        self, features: TrunkFeatures, object_probs: Tensor, *, backend: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Memory keys and values of a frame from its cached trunk features and object masks.

        Args:
            features: the frame's trunk features (batch 1).
            object_probs: (O, H, W) each object's probability map (background excluded), in the
                model's dtype, same padded size as the frame.
            backend: op backend for reversed sub-pixel.

        Returns:
            keys (O, Ck, P) and values (O, Cv, P), P = H/16 * W/16.
        """
        own_small, others_small = ops.rsp(object_probs, factor=self.config.rsp_factor, backend=backend)
        if object_probs.shape[0] == 1:
            # A lone object has no others: their mask is zero and so are its convolutions.
            fused = self.LAE(features, object_probs[:, None], None, own_small, None)
        else:
            others = F.pixel_shuffle(others_small, self.config.rsp_factor)
            fused = self.LAE(features, object_probs[:, None], others, own_small, others_small)
        key, value = self.KV_M_r4(fused)
        return key.flatten(2), value.flatten(2)

    def segment_objects(
        self,
        query: QueryEncoding,
        mem_key: Tensor,
        mem_val: Tensor,
        n_valid: Tensor | None = None,
        *,
        backend: str | None = None,
    ) -> Tensor:
        """Each object's foreground probability in the query frame.

        Args:
            query: the encoded query frame.
            mem_key: (O, Ck, N) memory keys per object.
            mem_val: (O, Cv, N) memory values per object.
            n_valid: optional (O,) valid memory lengths.
            backend: op backend for the memory read.

        Returns:
            (O, H, W) float32 probabilities at the (padded) frame size.
        """
        num_objects = mem_key.shape[0]
        _, _, height, width = query.key.shape
        q_key = query.key.flatten(2).expand(num_objects, -1, -1)
        q_val = query.value.flatten(2).expand(num_objects, -1, -1)
        readout = ops.memory_read(mem_key, mem_val, q_key, q_val, n_valid=n_valid, backend=backend)
        readout = readout.view(num_objects, -1, height, width)
        logits = self.Decoder(self.aspp(readout), query.features.r3, query.features.r2)
        return foreground_probability(logits)


def foreground_probability(logits: Tensor, scale: int = 4) -> Tensor:
    """Upsampled two-class logits -> foreground probability.

    ``softmax(upsample(logits))[1]`` equals ``sigmoid(upsample(l1 - l0))`` because bilinear upsampling
    is linear: this upsamples one channel instead of two.

    Args:
        logits: (O, 2, h, w) background / foreground logits.
        scale: upsampling factor.

    Returns:
        (O, h * scale, w * scale) float32 probabilities.
    """
    margin = (logits[:, 1:2] - logits[:, 0:1]).float()
    margin = F.interpolate(margin, scale_factor=scale, mode="bilinear", align_corners=False)
    return torch.sigmoid(margin[:, 0])
