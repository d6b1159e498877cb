"""Model preparation for inference: a copy of a SwiftNet that computes the same function faster.

The copy has its batch norms folded into the convolutions, the LAE's paired mask convolutions
merged, channels-last weights, and, where they pay, Winograd 3x3 convolutions
(:mod:`~swiftcuda.optimize.winograd`), CPU convolution algorithms chosen by measurement
(:mod:`~swiftcuda.optimize.conv_tuning`), the ReLUs and residual adds fused into their convolutions
(:mod:`~swiftcuda.optimize.pointwise_fusion`) or convolutions compiled with TorchInductor.

A folded model computes the same function with fewer passes over memory: each batch norm becomes
a per-channel scale of its convolution's weights and a bias. Folding happens on a copy in float32
(then cast once), so the caller's model, its official parameter names and its precision are left
alone.

A prepared model carries a mark (:func:`is_prepared`): the engine runs a marked model as it is and
prepares any other one with the default :class:`PrepareOptions`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from swiftcuda.model.swiftnet import SwiftNet
from swiftcuda.optimize.conv_tuning import ConvTuner, TuningCache, use_tuned_convolutions
from swiftcuda.optimize.pointwise_fusion import fuse_pointwise, require_pointwise_fusion, should_fuse_pointwise
from swiftcuda.optimize.winograd import resolve_winograd, use_winograd_convolutions

#: The attribute that marks a model as prepared (its value: the :class:`PrepareOptions` used, or
#: None for a model marked to run as it is).
PREPARED_MARK = "swiftcuda_prepared"


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


@dataclass(frozen=True)
class PrepareOptions:
    """How :func:`prepare` rewrites a model. The defaults are the engine's.

    Attributes:
        compile: compile the convolutional parts with TorchInductor (faster steps after a slower
            start; see :func:`compile_convolutions`).
        winograd: replace the 3x3 stride-1 convolutions by
            :class:`~swiftcuda.optimize.winograd.WinogradConv2d` (float32 CPU inference); None for
            the default of :func:`~swiftcuda.optimize.winograd.resolve_winograd` for the model's
            device and dtype ("in float32 on a CPU, where the extension supports it, unless
            compiling"). Labels then agree with direct convolutions on more than 99.99% of pixels
            rather than bit for bit; False gives the direct computation. With ``tune``: None lets
            the measurement decide where Winograd is used, False leaves it out, True applies it by
            the fixed rule (:func:`~swiftcuda.optimize.winograd.use_winograd_convolutions`) and
            tunes the rest.
        tune: on a CPU, without ``compile``, let every convolution run the algorithm measured
            fastest for its input (:mod:`swiftcuda.optimize.conv_tuning`; measured once, then
            cached on disk per CPU model and torch version); ignored elsewhere (on a GPU, cuDNN
            chooses). False keeps the fixed rules.
        pointwise: fuse the residual blocks' ReLUs and adds into their convolutions
            (:mod:`swiftcuda.optimize.pointwise_fusion`); None: on a CPU in 16 bits without
            ``compile``, where oneDNN can run it. True on a CPU that cannot run it in the model's
            dtype (16 bits without AVX-512 or AVX-NE-CONVERT) makes :func:`prepare` raise ValueError.
        channels_last: store convolution weights NHWC, which oneDNN and cuDNN run faster,
            especially in half precision.
    """

    compile: bool = False
    winograd: bool | None = None
    tune: bool = True
    pointwise: bool | None = None
    channels_last: bool = True

    def __post_init__(self) -> None:
        for name in ("compile", "tune", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PrepareOptions.{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("winograd", "pointwise"):
            if getattr(self, name) not in (None, True, False):
                raise ValueError(f"PrepareOptions.{name} must be None, True or False, got {getattr(self, name)!r}")


def is_prepared(model: SwiftNet) -> bool:
    """Whether ``model`` was made by :func:`prepare` or marked by :func:`mark_prepared`: the engine
    then runs it as it is."""
    return hasattr(model, PREPARED_MARK)


def mark_prepared(model: SwiftNet) -> SwiftNet:
    """Mark ``model`` itself (no copy) as ready for the engine, which then runs it as it is: the
    plain computation, without folded batch norms or faster convolutions (for comparisons with the
    training model, or a model prepared by other means).

    Returns:
        ``model``, marked.
    """
    setattr(model, PREPARED_MARK, None)
    return model


def prepare(
    model: SwiftNet, options: PrepareOptions | None = None, *, tuning_cache: TuningCache | None = None
) -> SwiftNet:
    """A copy of ``model`` prepared for inference: batch norms folded, mask convolutions paired,
    and the rewrites ``options`` asks for (see :class:`PrepareOptions`).

    Args:
        model: any SwiftNet not prepared yet (left unchanged).
        options: the rewrites; None for the defaults (the engine's).
        tuning_cache: where convolution choices are kept (None: the on-disk cache of this CPU and
            torch).

    Returns:
        The prepared copy, marked (:func:`is_prepared`), in eval mode, on the model's device and in
        its dtype.

    Raises:
        ValueError: ``model`` is already prepared, or ``options`` asks for a rewrite this device
            cannot run (Winograd off a float32 CPU, pointwise fusion where oneDNN lacks it).
    """
    if is_prepared(model):
        raise ValueError("this model is already prepared: prepare the model it was made from, or run it as it is")
    options = PrepareOptions() if options is None else options
    compile, winograd, tune = options.compile, options.winograd, options.tune
    parameter = next(model.parameters())
    prepared = copy.deepcopy(model).eval().float()
    fold_batch_norms(prepared)
    prepared.LAE.pair_mask_convolutions()
    prepared = prepared.to(dtype=parameter.dtype)
    if options.channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    pointwise = options.pointwise
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
        tuner = ConvTuner(
            TuningCache() if tuning_cache is None else tuning_cache, winograd=False if winograd else winograd
        )
        use_tuned_convolutions(prepared, tuner)
    for p in prepared.parameters():
        p.requires_grad_(False)
    if compile:
        prepared = compile_convolutions(prepared)
    setattr(prepared, PREPARED_MARK, options)
    return prepared
