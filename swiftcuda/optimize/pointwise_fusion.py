"""Convolutions with the ReLU and the residual add after them fused into one oneDNN call (CPU,
16-bit inference): the ResNet blocks, the stem, the LAE and the decoder's residual blocks.

In a bfloat16 step on a CPU the convolutions are fast enough (AMX, AVX-512 BF16) that the passes
over memory between them cost a large share of the step: each add and ReLU is a full read and write
of a map that is no longer in cache. oneDNN applies them as post-ops while the convolution's output is still in
registers (``torch.ops.mkldnn._convolution_pointwise``, what TorchInductor emits for the same
pattern), without compiling anything. In float32 the convolutions dominate (the adds and ReLUs are
about 5% of the step) and the convolution tuner may pick Winograd or NCHW layers, which these calls
would bypass, so float32 models are left alone. ``benchmarks/bench_pointwise_fusion.py`` measures it
(figures per CPU in benchmarks/RESULTS.md): faster where the convolutions are fast (AMX), neutral
where they take most of the step, never slower beyond noise, so it is on for every CPU rather than
decided per machine.

The ResNet blocks are rewritten (their batch norms, folded, sit between convolution and ReLU in the
training model); elsewhere the model's forward already goes through
:func:`~swiftcuda.model.post_ops.conv_post`, and only the convolutions are swapped. Every fused
call computes what the plain ops do (the add in float32 before one rounding, where the plain
block rounds the convolution's output first), and falls back to them on other devices, when
gradients are wanted, and for a residual broadcast over the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swiftcuda.model.backbone import BasicBlock, Bottleneck, Encoder
from swiftcuda.model.decoder import ResBlock
from swiftcuda.model.lae import LAE
from swiftcuda.optimize.fused_conv import FusedConv, pointwise_fusion_available
from swiftcuda.precision import dtype_name

__all__ = ["fuse_pointwise", "require_pointwise_fusion", "should_fuse_pointwise"]

#: The dtypes whose CPU models are fused (see the module docstring).
FUSED_DTYPES = (torch.bfloat16, torch.float16)


def should_fuse_pointwise(device: torch.device, dtype: torch.dtype) -> bool:
    """The default of :func:`~swiftcuda.optimize.prepare`: CPU models in 16 bits, where
    this torch build can run them."""
    return device.type == "cpu" and dtype in FUSED_DTYPES and pointwise_fusion_available(dtype)


def require_pointwise_fusion(device: torch.device, dtype: torch.dtype) -> None:
    """Raise a one-line error where fusion is asked for on a CPU that cannot run it in ``dtype``
    (oneDNN's 16-bit convolutions need AVX-512 or AVX-NE-CONVERT: without this check, an AVX2 CPU
    fails at the first frame instead). Other devices run :class:`FusedConv`'s plain ops."""
    if device.type == "cpu" and not pointwise_fusion_available(dtype):
        raise ValueError(
            f"oneDNN cannot run {dtype_name(dtype)} convolutions with fused ReLUs and adds on this CPU: "
            "leave pointwise=None (the default decides) or pass pointwise=False"
        )


def _require_folded(block: BasicBlock | Bottleneck) -> None:
    norms = [getattr(block, f"bn{i}") for i in (1, 2, 3) if hasattr(block, f"bn{i}")]
    if not all(isinstance(norm, nn.Identity) for norm in norms):
        raise ValueError("fold the batch norms into the convolutions before fusing (prepare.fold_batch_norms)")


class FusedBasicBlock(nn.Module):
    """A folded :class:`~swiftcuda.model.backbone.BasicBlock`: conv1+ReLU, then conv2+skip+ReLU."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        _require_folded(block)
        self.conv1 = FusedConv(block.conv1, relu=True)
        self.conv2 = FusedConv(block.conv2, relu=True)
        self.downsample = block.downsample

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x), residual=skip)


class FusedBottleneck(nn.Module):
    """A folded :class:`~swiftcuda.model.backbone.Bottleneck`: conv1+ReLU, conv2+ReLU,
    conv3+skip+ReLU."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        _require_folded(block)
        self.conv1 = FusedConv(block.conv1, relu=True)
        self.conv2 = FusedConv(block.conv2, relu=True)
        self.conv3 = FusedConv(block.conv3, relu=True)
        self.downsample = block.downsample

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), residual=skip)


_REWRITES: dict[type[nn.Module], type[nn.Module]] = {BasicBlock: FusedBasicBlock, Bottleneck: FusedBottleneck}

#: Per module type, the convolutions whose forward goes through ``conv_post`` (batch-norm-free
#: once folded), and whether a ReLU follows each.
_FUSED_CONVS: dict[type[nn.Module], dict[str, bool]] = {
    Encoder: {"conv1": True},
    ResBlock: {"conv1": True, "conv2": False},
    LAE: {
        name: True
        for name in (
            "conv1_m",
            "paired_full",
            "conv_fusion1",
            "conv_fusion2",
            "conv_fusion3",
            "conv_fusion4",
            "conv_fusion5",
        )
    },
}


def fuse_pointwise(model: nn.Module) -> int:
    """Fuse the ReLUs and residual adds of a folded model (batch norms already in the convolutions,
    mask convolutions paired) into its convolutions, in place: ResNet blocks are rewritten, and the
    stem's, the LAE's and the decoder's convolutions become :class:`FusedConv`.

    Returns:
        How many modules were rewritten or had convolutions fused.
    """
    rewritten = 0
    for name, child in model.named_children():
        rewrite = _REWRITES.get(type(child))
        if rewrite is not None:
            setattr(model, name, rewrite(child))
            rewritten += 1
            continue
        if isinstance(child, Encoder) and not isinstance(child.bn1, nn.Identity):
            raise ValueError("fold the batch norms into the convolutions before fusing (prepare.fold_batch_norms)")
        convs = _FUSED_CONVS.get(type(child), {})
        for conv_name, relu in convs.items():
            conv = getattr(child, conv_name)
            if isinstance(conv, nn.Conv2d):  # paired_full is None until the mask convolutions are paired
                setattr(child, conv_name, FusedConv(conv, relu=relu))
        rewritten += bool(convs) + fuse_pointwise(child)
    return rewritten
