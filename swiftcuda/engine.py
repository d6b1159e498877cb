"""Engines from :class:`~swiftcuda.options.EngineOptions`: the one place where options become a
loaded model, a prepared copy of it and a segmenter.

Example::

    from swiftcuda import EngineOptions, build_segmenter

    segmenter = build_segmenter(EngineOptions(weights="swiftnet_resnet18_old.pth", memory="pam"))
    probs = segmenter.step(first_rgb, mask=first_labels)

The command line, the Ray workers of ``segment-many`` and the benchmarks all build their engines
here, so one option means the same everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from swiftcuda.errors import InputError
from swiftcuda.inference import BatchedSegmenter, Segmenter
from swiftcuda.inference.stream import VideoStream
from swiftcuda.model import SwiftNet
from swiftcuda.optimize import is_prepared, prepare
from swiftcuda.options import EngineOptions
from swiftcuda.weights import DEMO, DEMO_NOTICE, demo_weights_path, load_model, resolve_device

if TYPE_CHECKING:
    from swiftcuda.onnx.runtime import OnnxSegmenter

__all__ = [
    "build_batched_segmenter",
    "build_onnx_segmenter",
    "build_segmenter",
    "default_device",
    "load_engine_model",
    "resolve_weights",
]

logger = logging.getLogger(__name__)

#: Called with a line for the user (the demo weights are in use, an ONNX export starts).
Notify = Callable[[str], None]

NO_WEIGHTS = (
    "no weights given and this installation has no demo weights: give a checkpoint (--weights CKPT, or "
    "EngineOptions(weights=...)), for example the official swiftnet_resnet18_old.pth released with the SwiftNet "
    "code (github.com/haochenheheda/SwiftNet)"
)


def default_device() -> str:
    """ "cuda" when a GPU is available, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_weights(options: EngineOptions, notify: Notify | None = None) -> EngineOptions:
    """``options`` with its weights named: without weights, the demo weights, announced through
    ``notify`` (they were trained on synthetic videos only).

    Raises:
        InputError: no weights given and no demo weights installed.
    """
    if options.weights is not None:
        return options
    if not demo_weights_path().is_file():
        raise InputError(NO_WEIGHTS)
    (notify or logger.warning)(DEMO_NOTICE)
    return options.replace(weights=DEMO)


def load_engine_model(options: EngineOptions, notify: Notify | None = None) -> SwiftNet:
    """The model the options describe (weights, variant), on their device in their precision.

    Raises:
        InputError / WeightsError: no weights, an unusable device, or a bad checkpoint.
    """
    options = resolve_weights(options, notify)
    device = resolve_device(options.device or default_device())
    return load_model(options.weights, device=device, dtype=options.precision, variant=options.variant)


def _prepared(model: SwiftNet, options: EngineOptions) -> SwiftNet:
    return model.eval() if is_prepared(model) else prepare(model.eval(), options.prepare_options)


def _device(model: SwiftNet) -> torch.device:
    return next(model.parameters()).device


def build_segmenter(
    options: EngineOptions, model: SwiftNet | None = None, *, notify: Notify | None = None
) -> VideoStream:
    """The segmenter the options describe: a :class:`~swiftcuda.inference.Segmenter` of the model
    prepared as they ask, or for ``runtime="onnx"`` :func:`build_onnx_segmenter`'s.

    Args:
        options: the engine's options.
        model: the model to run (its device and dtype rule, and ``options``' weights, variant,
            device and precision are not used); None loads it (:func:`load_engine_model`). A model
            already prepared (:func:`~swiftcuda.optimize.prepare`) runs as it is.
        notify: called with a line for the user (the demo weights are in use, an ONNX export
            starts); None logs it.

    Raises:
        InputError / WeightsError: unusable weights, device or options.
    """
    if options.runtime == "onnx":
        return build_onnx_segmenter(options, model, notify=notify)
    if model is None:
        model = load_engine_model(options, notify)
    prepared = _prepared(model, options)
    return Segmenter(prepared, **options.stream_options(_device(prepared)))


def build_batched_segmenter(
    options: EngineOptions, videos: int, model: SwiftNet | None = None, *, notify: Notify | None = None
) -> BatchedSegmenter:
    """``videos`` streams configured by the options as :func:`build_segmenter` configures one,
    sharing one prepared model (a :class:`~swiftcuda.inference.BatchedSegmenter`).

    Raises:
        InputError: options a batched session cannot run (CUDA graphs, which are per stream;
            compiled convolutions, which compile again for every batch; the ONNX runtime), or
            unusable weights or device.
    """
    if options.runtime != "torch":
        raise InputError(f"several videos are stepped together by the torch runtime, not {options.runtime!r}")
    if options.cuda_graphs:
        raise InputError("a batched session does not capture CUDA graphs (cuda_graphs=True): step one video for that")
    if options.compile:
        raise InputError("compiled convolutions (compile=True) step one video at a time: step one video for that")
    if model is None:
        model = load_engine_model(options, notify)
    stream = {**options.stream_options(_device(model)), "cuda_graphs": False}
    return BatchedSegmenter(_prepared(model, options), videos, **stream)


def build_onnx_segmenter(
    options: EngineOptions, model: SwiftNet | None = None, *, notify: Notify | None = None
) -> OnnxSegmenter:
    """The step exported to ONNX and run on ONNX Runtime, with the options' memory schedule,
    capacity and internal size: the model loaded in fp32 (for precision "auto") or fp16, exported
    through the cache on first use (:func:`~swiftcuda.onnx.cache.cached_export`).

    Args:
        options: the engine's options (the backend and the model preparation are torch's, unused).
        model: a float32 or float16 model to export; None loads it.
        notify: called with a line for the user (the demo weights, an export starting); None logs it.

    Raises:
        InputError: the onnx extra is missing, or bf16 was asked (ONNX Runtime has no bfloat16
            convolutions).
    """
    from swiftcuda.onnx.dependencies import require_onnx
    from swiftcuda.onnx.runtime import OnnxSegmenter

    require_onnx()
    require_onnx(export=True)  # a first use exports
    if options.precision == "bf16":
        raise InputError(
            "--runtime onnx runs fp32 or fp16 models (ONNX Runtime has no bfloat16 convolutions): pass --precision fp32"
        )
    if model is None:
        precision = "fp32" if options.precision == "auto" else options.precision
        model = load_engine_model(options.replace(precision=precision), notify)
    return OnnxSegmenter.from_model(
        model,
        notify=notify or logger.info,
        memory=options.memory,
        mem_every=options.mem_every,
        beta=options.beta,
        capacity=options.capacity,
        pam=options.pam,
        internal_size=options.internal_size,
    )
