"""An independent, functional restatement of the official SwiftNet evaluation.

It is what the engine is measured against: the equivalence tests check that the engine computes the
same probabilities and memories, and the end-to-end benchmark times it as "the official code".
It works straight from a state dict with ``torch.nn.functional`` and follows the released code's
semantics and costs step by step, including what is easy to miss:

- torchvision's stem ReLU is in place, so the "c1" the official encoder returns is rectified;
- the official ResBlock rectifies its input in place, so its skip path adds ``relu(x)``;
- the decoder runs its skip branches once per object (here too, unlike the engine);
- the memory read is ``exp`` over the raw logits normalised over the memory axis;
- each step reads ``[long-term memory, previous frame]`` built by concatenation;
- the memory update ranks pixels with a double argsort and keeps ranks ``>= int(P * (1 - beta))``;
- soft aggregation is computed at the padded size, then cropped, then softmaxed again.

The engine (``swiftcuda.Segmenter``) must match this to float32 rounding with the same weights.
Only the ResNet-18 layout of the official release is covered.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

StateDict = dict[str, Tensor]


def _conv(sd: StateDict, name: str, x: Tensor, stride: int = 1, padding: int = 0, dilation: int = 1) -> Tensor:
    return F.conv2d(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), stride, padding, dilation)


def _bn(sd: StateDict, name: str, x: Tensor) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{name}.running_mean"],
        sd[f"{name}.running_var"],
        sd[f"{name}.weight"],
        sd[f"{name}.bias"],
        training=False,
        eps=1e-5,
    )


def _basic_block(sd: StateDict, name: str, x: Tensor, stride: int) -> Tensor:
    out = F.relu(_bn(sd, f"{name}.bn1", _conv(sd, f"{name}.conv1", x, stride, 1)))
    out = _bn(sd, f"{name}.bn2", _conv(sd, f"{name}.conv2", out, 1, 1))
    if f"{name}.downsample.0.weight" in sd:
        x = _bn(sd, f"{name}.downsample.1", _conv(sd, f"{name}.downsample.0", x, stride))
    return F.relu(out + x)


def _layer(sd: StateDict, name: str, x: Tensor, stride: int) -> Tensor:
    x = _basic_block(sd, f"{name}.0", x, stride)
    return _basic_block(sd, f"{name}.1", x, 1)


def encoder(sd: StateDict, frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ResNet-18 trunk: frame (B, 3, H, W) in [0, 1] -> r4, r3, r2, c1 (c1 rectified)."""
    x = (frame - sd["Encoder.mean"]) / sd["Encoder.std"]
    c1 = F.relu(_bn(sd, "Encoder.bn1", _conv(sd, "Encoder.conv1", x, 2, 3)))
    x = F.max_pool2d(c1, 3, 2, 1)
    r2 = _layer(sd, "Encoder.res2", x, 1)
    r3 = _layer(sd, "Encoder.res3", r2, 2)
    r4 = _layer(sd, "Encoder.res4", r3, 2)
    return r4, r3, r2, c1


def _unshuffle(x: Tensor, factor: int) -> Tensor:
    """(B, H, W) -> (B, factor^2, H/factor, W/factor), channel = row offset * factor + column offset."""
    batch, height, width = x.shape
    x = x.reshape(batch, height // factor, factor, width // factor, factor)
    return x.permute(0, 2, 4, 1, 3).reshape(batch, factor * factor, height // factor, width // factor)


def lae(sd: StateDict, r4: Tensor, r3: Tensor, r2: Tensor, c1: Tensor, own: Tensor, others: Tensor) -> Tensor:
    """Light-aggregation encoder; own / others are (O, H, W) maps."""
    m, o = own[:, None], others[:, None]
    x = F.relu(c1 + _conv(sd, "LAE.conv1_m", m, 2, 3) + _conv(sd, "LAE.conv1_o", o, 2, 3))
    x = F.relu(r2 + _conv(sd, "LAE.conv_fusion1", x, 2, 1))
    x = F.relu(r3 + _conv(sd, "LAE.conv_fusion2", x, 2, 1))
    x = F.relu(
        r4
        + _conv(sd, "LAE.conv2_m", _unshuffle(own, 16), 1, 1)
        + _conv(sd, "LAE.conv2_o", _unshuffle(others, 16), 1, 1)
        + _conv(sd, "LAE.conv_fusion3", x, 2, 1)
    )
    x = F.relu(_conv(sd, "LAE.conv_fusion4", x, 1, 1))
    return F.relu(_conv(sd, "LAE.conv_fusion5", x, 1, 1))


def _res_block(sd: StateDict, name: str, x: Tensor) -> Tensor:
    x = F.relu(x)  # the official in-place ReLU: the skip path carries relu(x)
    return x + _conv(sd, f"{name}.conv2", F.relu(_conv(sd, f"{name}.conv1", x, 1, 1)), 1, 1)


def _refine(sd: StateDict, name: str, skip: Tensor, coarse: Tensor) -> Tensor:
    s = _res_block(sd, f"{name}.ResFS", _conv(sd, f"{name}.convFS", skip, 1, 1))
    return _res_block(
        sd, f"{name}.ResMM", s + F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    )


def decode(sd: StateDict, readout: Tensor, r3: Tensor, r2: Tensor) -> Tensor:
    """ASPP and decoder: readout (O, 256, h, w) -> (O, 2, 16h, 16w) logits."""
    branches = [F.relu(_conv(sd, "aspp.aspp1.atrous_conv", readout))]
    for index, dilation in ((2, 2), (3, 4), (4, 8)):
        branches.append(F.relu(_conv(sd, f"aspp.aspp{index}.atrous_conv", readout, 1, dilation, dilation)))
    x = F.relu(_conv(sd, "aspp.conv1", torch.cat(branches, dim=1)))
    objects = x.shape[0]
    m4 = _res_block(sd, "Decoder.ResMM", _conv(sd, "Decoder.convFM", x, 1, 1))
    m3 = _refine(sd, "Decoder.RF3", r3.expand(objects, -1, -1, -1), m4)
    m2 = _refine(sd, "Decoder.RF2", r2.expand(objects, -1, -1, -1), m3)
    p2 = _conv(sd, "Decoder.pred2", F.relu(m2), 1, 1)
    return F.interpolate(p2, scale_factor=4, mode="bilinear", align_corners=False)


def read(keys: Tensor, values: Tensor, q_key: Tensor, q_val: Tensor) -> Tensor:
    """keys (O, Ck, N), values (O, Cv, N), q_key (O, Ck, h, w), q_val (O, Cv, h, w) -> (O, 2Cv, h, w)."""
    objects, key_dim, _ = keys.shape
    _, value_dim, height, width = q_val.shape
    weights = torch.exp(torch.bmm(keys.transpose(1, 2), q_key.reshape(objects, key_dim, -1)) / math.sqrt(key_dim))
    weights = weights / weights.sum(dim=1, keepdim=True)
    mem = torch.bmm(values, weights).reshape(objects, value_dim, height, width)
    return torch.cat([mem, q_val], dim=1)


def memory_update(
    keys: Tensor, values: Tensor, new_key: Tensor, new_val: Tensor, beta: float = 0.1
) -> tuple[Tensor, Tensor]:
    """Append the new pixels whose best cosine match ranks in the lowest beta."""
    unit = keys / keys.norm(dim=1, keepdim=True)
    new_unit = new_key / new_key.norm(dim=1, keepdim=True)
    best = torch.bmm(new_unit.transpose(1, 2), unit).max(dim=2).values  # (O, P)
    rank = best.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = most similar
    pixels = best.shape[1]
    keep = rank >= int(pixels * (1 - beta))  # the least similar pixels
    objects = keys.shape[0]
    picked_key = new_key.transpose(1, 2)[keep].reshape(objects, -1, keys.shape[1]).transpose(1, 2)
    picked_val = new_val.transpose(1, 2)[keep].reshape(objects, -1, values.shape[1]).transpose(1, 2)
    return torch.cat([keys, picked_key], dim=2), torch.cat([values, picked_val], dim=2)


def _pad_amounts(height: int, width: int) -> tuple[int, int, int, int]:
    extra_h, extra_w = -height % 16, -width % 16
    return extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2


class OfficialLoop:
    """The official evaluation loop, one frame at a time.

    Args:
        state_dict: official-layout SwiftNet-R18 weights (float32).
        first_frame: (1, 3, H, W) float32 RGB in [0, 1].
        first_labels: (H, W) labels 0..O of the first frame (objects numbered 1..O).
        mem_every: update period of the long-term memory.
    """

    def __init__(self, state_dict: StateDict, first_frame: Tensor, first_labels: Tensor, mem_every: int = 5) -> None:
        self.sd, self.mem_every = state_dict, mem_every
        self.objects = int(first_labels.max())
        height, width = first_frame.shape[-2:]
        self.pad = _pad_amounts(height, width)
        # As the official loader does: one-hot masks over 11 classes, background first.
        self.masks = torch.stack([(first_labels == k).float() for k in range(11)])
        self.features = encoder(self.sd, F.pad(first_frame, self.pad))
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.t = 0

    def _crop(self, x: Tensor) -> Tensor:
        left, right, top, bottom = self.pad
        return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]

    def step(self, frame: Tensor) -> Tensor:
        """Segment the next frame (1, 3, H, W); returns its (O + 1, H, W) probabilities."""
        self.t += 1
        objects, sd = self.objects, self.sd
        padded_masks = F.pad(self.masks, self.pad)
        own = padded_masks[1 : objects + 1]
        others = torch.stack(
            [
                (padded_masks[1 : o + 1].sum(0) + padded_masks[o + 2 : objects + 1].sum(0)).clamp(0, 1)
                for o in range(objects)
            ]
        )
        r4, r3, r2, c1 = self.features
        fused = lae(sd, r4, r3, r2, c1, own, others)
        prev_key = _conv(sd, "KV_M_r4.Key", fused, 1, 1).reshape(objects, 32, -1)
        prev_val = _conv(sd, "KV_M_r4.Value", fused, 1, 1).reshape(objects, 128, -1)
        if self.t == 1:
            this_keys, this_values = prev_key, prev_val
        else:
            this_keys, this_values = torch.cat([self.keys, prev_key], dim=2), torch.cat([self.values, prev_val], dim=2)

        self.features = encoder(sd, F.pad(frame, self.pad))
        r4, r3, r2, c1 = self.features
        q_key = _conv(sd, "KV_Q_r4.Key", r4, 1, 1).expand(objects, -1, -1, -1)
        q_val = _conv(sd, "KV_Q_r4.Value", r4, 1, 1).expand(objects, -1, -1, -1)
        logits = decode(sd, read(this_keys, this_values, q_key, q_val), r3, r2)
        fg = torch.softmax(logits, dim=1)[:, 1]
        em = torch.cat([torch.prod(1 - fg, dim=0, keepdim=True), fg]).clamp(1e-7, 1 - 1e-7)
        probs = torch.softmax(self._crop(torch.log(em / (1 - em))), dim=0)

        if (self.t - 1) % self.mem_every == 0:
            if self.t - 1 == 0:
                self.keys, self.values = this_keys, this_values
            else:
                self.keys, self.values = memory_update(self.keys, self.values, prev_key, prev_val)
        self.masks = probs
        return probs


def run_video(
    sd: StateDict, frames: Tensor, first_labels: Tensor, mem_every: int = 5
) -> tuple[list[Tensor], list[Tensor | None]]:
    """The official evaluation loop over a whole video.

    Args:
        frames: (T, 3, H, W) float32 RGB in [0, 1].
        first_labels: (H, W) labels 0..O of the first frame (objects numbered 1..O).

    Returns:
        For frames 1..T-1: the (O + 1, H, W) probabilities the official code computes, and the
        long-term memory keys (O, 32, N) after that frame's step (None before the first update).
    """
    loop = OfficialLoop(sd, frames[0:1], first_labels, mem_every)
    results, memories = [], []
    for t in range(1, frames.shape[0]):
        results.append(loop.step(frames[t : t + 1]))
        memories.append(loop.keys)
    return results, memories
