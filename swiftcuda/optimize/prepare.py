"""Inference-only rewrites of a SwiftNet: batch norms folded into convolutions, the LAE's paired mask
convolutions merged, channels-last layout, and on a CPU in 16 bits the residual blocks' ReLUs and
adds fused into their convolutions.

A folded model computes the same function with fewer passes over memory: each batch norm becomes
a per-channel scale of its convolution's weights and a bias. Folding happens on a copy in float32
(then cast once), so the caller's model, its official parameter names and its precision are left
alone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from swiftcuda.model.conv_tuning import ConvTuner, TuningCache, use_tuned_convolutions
from swiftcuda.model.pointwise_fusion import fuse_pointwise, require_pointwise_fusion, should_fuse_pointwise
from swiftcuda.model.swiftnet import SwiftNet
from swiftcuda.model.winograd import resolve_winograd, use_winograd_convolutions


def _fold_pairs(module: nn.Module, pairs: list[tuple[str, str]]) -> None:
    for conv_name, bn_name in pairs:
        conv, bn = getattr(module, conv_name), getattr(module, bn_name)
        setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(module, bn_name, nn.Identity())


def fold_batch_norms(model: SwiftNet) -> SwiftNet:
    """Fold every batch norm of the trunk into the convolution before it, in place.

    The model must be in eval mode and in float32 (fold, then cast).
    """
    if model.training:
        raise ValueError("batch norms can only be folded in eval mode")
    encoder = model.Encoder
    _fold_pairs(encoder, [("conv1", "bn1")])
    for layer in (encoder.res2, encoder.res3, encoder.res4):
        for block in layer:
            pairs = [(f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(block, f"conv{i}")]
            _fold_pairs(block, pairs)
            if block.downsample is not None:
                folded = fuse_conv_bn_eval(block.downsample[0], block.downsample[1])
                block.downsample = nn.Sequential(folded, nn.Identity())
    return model


#: The convolutional parts of SwiftNet that ``compile_convolutions`` hands to torch.compile.
COMPILED_PARTS = ("Encoder", "LAE", "KV_M_r4", "KV_Q_r4", "aspp", "Decoder")


def compile_convolutions(model: SwiftNet) -> SwiftNet:
    """Compile the convolutional parts of an inference copy with TorchInductor, in place.

    Inductor fuses each convolution with the ReLU and residual add around it and, with freezing,
    packs the weights once into the layout oneDNN wants instead of at every call. Each part is
    compiled for the shapes it first sees (a new frame size or object count compiles again), so the
    first frames of a video are slow; the memory ops stay outside, as opaque custom ops.
    """
    for name in COMPILED_PARTS:
        part = getattr(model, name)
        setattr(model, name, torch.compile(part, dynamic=False, options={"freezing": True}))
    return model


def inference_copy(
    model: SwiftNet,
    channels_last: bool = True,
    compile: bool = False,
    winograd: bool | None = False,
    tune: bool = False,
    tuning_cache: TuningCache | None = None,
    pointwise: bool | None = None,
) -> SwiftNet:
    """A copy of ``model`` prepared for inference: batch norms folded, mask convolutions paired,
    optionally channels-last weights, Winograd 3x3 convolutions, convolution algorithms chosen by
    measurement, and compiled convolutions.

    Args:
        model: any SwiftNet (left unchanged).
        channels_last: store convolution weights NHWC, which oneDNN and cuDNN run faster,
            especially in half precision.
        compile: see :func:`compile_convolutions`.
        winograd: replace the 3x3 stride-1 convolutions by
            :class:`~swiftcuda.model.winograd.WinogradConv2d` (float32 CPU inference); None for
            the default of :func:`~swiftcuda.model.winograd.resolve_winograd` for the model's
            device and dtype. With ``tune``: None lets the measurement decide where Winograd is used,
            False leaves it out, True applies it by the fixed rule
            (:func:`~swiftcuda.model.winograd.use_winograd_convolutions`) and tunes the rest.
        tune: on a CPU, without ``compile``, let every convolution run the algorithm measured
            fastest for its input (:mod:`swiftcuda.model.conv_tuning`); ignored elsewhere (on a GPU,
            cuDNN chooses).
        tuning_cache: where choices are kept (None: the on-disk cache of this CPU and torch).
        pointwise: fuse the residual blocks' ReLUs and adds into their convolutions
            (:mod:`swiftcuda.model.pointwise_fusion`); None: on a CPU in 16 bits without ``compile``,
            where oneDNN can run it. True on a CPU that cannot run it in the model's dtype (16 bits
            without AVX-512 or AVX-NE-CONVERT) raises ValueError.

    Returns:
        The prepared copy, in eval mode, on the model's device and in its dtype.
    """
    parameter = next(model.parameters())
    prepared = copy.deepcopy(model).eval().float()
    fold_batch_norms(prepared)
    prepared.LAE.pair_mask_convolutions()
    prepared = prepared.to(dtype=parameter.dtype)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    if pointwise is None:
        pointwise = not compile and should_fuse_pointwise(parameter.device, parameter.dtype)
    elif pointwise:
        require_pointwise_fusion(parameter.device, parameter.dtype)
    if pointwise:
        fuse_pointwise(prepared)
    fixed_winograd = resolve_winograd(winograd, parameter.device, parameter.dtype, compile=compile)
    tuned = tune and not compile and parameter.device.type == "cpu"
    if fixed_winograd and not (tuned and winograd is None):
        use_winograd_convolutions(prepared)
    if tuned:
        tuner = ConvTuner(TuningCache() if tuning_cache is None else tuning_cache, winograd=False if winograd else winograd)
        use_tuned_convolutions(prepared, tuner)
    for p in prepared.parameters():
        p.requires_grad_(False)
    return compile_convolutions(prepared) if compile else prepared
