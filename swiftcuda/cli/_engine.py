"""Command-line options shared by every subcommand that runs the engine."""

from __future__ import annotations

import argparse
import sys

import torch

from swiftcuda.errors import InputError
from swiftcuda.inference import Segmenter
from swiftcuda.model import SwiftNet
from swiftcuda.ops.backends import BACKENDS
from swiftcuda.precision import PRECISIONS
from swiftcuda.weights import DEMO, DEMO_NOTICE, demo_weights_path, load_model, resolve_device


NO_WEIGHTS = (
    "no weights given and this installation has no demo weights: pass --weights CKPT, for example "
    "the official swiftnet_resnet18_old.pth released with the SwiftNet code (github.com/haochenheheda/SwiftNet)"
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def internal_size(text: str):
    """argparse type of ``--internal-size``: auto, none, S or HxW."""
    from swiftcuda.inference.rescale import parse_internal_size

    try:
        return parse_internal_size(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the model and engine options (weights, device, precision, memory mode, backend)."""
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--weights", metavar="CKPT",
        help="SwiftNet checkpoint (official or swiftcuda); default: the demo weights, trained on synthetic videos",
    )
    group.add_argument("--variant", choices=("r18", "r50"), default="r18", help="backbone of the checkpoint")
    group.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when a GPU is available, else cpu)"
    )
    group.add_argument(
        "--precision", choices=("auto", *PRECISIONS), default="auto",
        help="model precision (auto: fp16 on a GPU, bf16 on a CPU with native bfloat16, else fp32)",
    )
    group.add_argument(
        "--memory", choices=("official", "pam"), default="official",
        help="official: update every --mem-every frames; pam: variation-aware trigger",
    )
    group.add_argument("--mem-every", type=positive_int, default=5, help="official update period")
    group.add_argument(
        "--capacity", type=positive_int, default=None, help="long-term memory entries per object"
    )
    group.add_argument(
        "--internal-size", type=internal_size, default="auto", metavar="auto|none|S|HxW",
        help="size the engine runs at; masks always come back at the input's size. S: the shorter side "
        "(nothing is enlarged), HxW: exactly that, none: the input's size, auto (default): the size "
        "recommended for the weights (480 for the official ones), at most 1080 on a CPU",
    )
    group.add_argument("--backend", choices=tuple(BACKENDS), default=None, help="op implementation")
    group.add_argument(
        "--compile", action="store_true",
        help="compile the convolutions with TorchInductor (faster frames after a slower start)",
    )
    group.add_argument(
        "--direct-convolutions", action="store_true",
        help="on a CPU in fp32, compute 3x3 convolutions directly as the official code does, not with the "
        "faster Winograd kernels (whose labels agree on more than 99.99%% of pixels)",
    )
    group.add_argument(
        "--no-tune", action="store_true",
        help="on a CPU, keep the fixed convolution rules instead of the algorithms measured fastest on this "
        "machine (see `swiftcuda tune`)",
    )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_engine_model(args: argparse.Namespace) -> SwiftNet:
    """The model the options ask for.

    Raises:
        InputError / WeightsError: no weights, an unusable device, or a bad checkpoint.
    """
    device = resolve_device(args.device or default_device())
    return load_model(engine_weights(args), device=device, dtype=args.precision, variant=args.variant)


def engine_weights(args: argparse.Namespace) -> str:
    """``--weights``, or the demo weights (saying so on stderr) when none are given.

    Raises:
        InputError: no weights given and no demo weights installed.
    """
    if args.weights is not None:
        return args.weights
    if not demo_weights_path().is_file():
        raise InputError(NO_WEIGHTS)
    print(f"swiftcuda: {DEMO_NOTICE}", file=sys.stderr)
    return DEMO


def make_segmenter(model: SwiftNet, args: argparse.Namespace) -> Segmenter:
    """A segmenter configured by the options."""
    return Segmenter(
        model, memory=args.memory, mem_every=args.mem_every, capacity=args.capacity, backend=args.backend,
        compile=args.compile, cuda_graphs=model_device(model).type == "cuda",
        winograd=False if args.direct_convolutions else None, tune=not args.no_tune,
        internal_size=args.internal_size,
    )


def model_device(model: SwiftNet) -> torch.device:
    return next(model.parameters()).device
