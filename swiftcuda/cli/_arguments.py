"""What the subcommands share: argument types, the engine's and the Ray workers' option groups,
the conversion of parsed arguments into the library's options, and how problems are reported.

Subcommands import this module and the library, never one another. Nothing below ``cli/`` sees an
``argparse.Namespace``: the engine's arguments become one :class:`~swiftcuda.options.EngineOptions`
(:func:`engine_options`), the Ray workers' one :class:`~swiftcuda.many.driver.Placement`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from swiftcuda.errors import InputError
from swiftcuda.ops.backends import BACKENDS
from swiftcuda.precision import PRECISIONS

if TYPE_CHECKING:
    from swiftcuda.many.driver import Placement
    from swiftcuda.options import EngineOptions


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def sequence_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give sequence names separated by commas")
    return names


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
        "--weights",
        metavar="CKPT",
        help="SwiftNet checkpoint (official or swiftcuda); default: the demo weights, trained on synthetic videos",
    )
    group.add_argument("--variant", choices=("r18", "r50"), default="r18", help="backbone of the checkpoint")
    group.add_argument("--device", default=None, help="cpu or cuda (default: cuda when a GPU is available, else cpu)")
    group.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="model precision (auto: fp16 on a GPU, bf16 on a CPU with native bfloat16, else fp32)",
    )
    group.add_argument(
        "--memory",
        choices=("official", "pam"),
        default="official",
        help="official: update every --mem-every frames; pam: variation-aware trigger",
    )
    group.add_argument("--mem-every", type=positive_int, default=5, help="official update period")
    group.add_argument("--capacity", type=positive_int, default=None, help="long-term memory entries per object")
    group.add_argument(
        "--internal-size",
        type=internal_size,
        default="auto",
        metavar="auto|none|S|HxW",
        help="size the engine runs at; masks always come back at the input's size. S: the shorter side "
        "(nothing is enlarged), HxW: exactly that, none: the input's size, auto (default): the size "
        "recommended for the weights (480 for the official ones), at most 1080 on a CPU",
    )
    group.add_argument("--backend", choices=tuple(BACKENDS), default=None, help="op implementation")
    group.add_argument(
        "--compile",
        action="store_true",
        help="compile the convolutions with TorchInductor (faster frames after a slower start)",
    )
    group.add_argument(
        "--direct-convolutions",
        action="store_true",
        help="on a CPU in fp32, compute 3x3 convolutions directly as the official code does, not with the "
        "faster Winograd kernels (whose labels agree on more than 99.99%% of pixels)",
    )
    group.add_argument(
        "--no-tune",
        action="store_true",
        help="on a CPU, keep the fixed convolution rules instead of the algorithms measured fastest on this "
        "machine (see `swiftcuda tune`)",
    )


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine options of parsed arguments (:func:`add_engine_arguments`, and ``--runtime``
    where the subcommand has it). ``--weights`` left out stays None: the demo weights, announced
    when the model is loaded (:func:`notify`)."""
    from swiftcuda.options import EngineOptions

    return EngineOptions(
        weights=args.weights,
        variant=args.variant,
        device=args.device,
        precision=args.precision,
        memory=args.memory,
        mem_every=args.mem_every,
        capacity=args.capacity,
        backend=args.backend,
        internal_size=args.internal_size,
        compile=args.compile,
        winograd=False if args.direct_convolutions else None,
        tune=not args.no_tune,
        runtime=getattr(args, "runtime", "torch"),
    )


def engine_weights(args: argparse.Namespace) -> str:
    """``--weights``, or the demo weights (announced on stderr) when none are given.

    Raises:
        InputError: no weights given and no demo weights installed.
    """
    from swiftcuda.engine import resolve_weights
    from swiftcuda.options import EngineOptions

    return resolve_weights(EngineOptions(weights=args.weights), notify).weights


def notify(line: str) -> None:
    """Tell the user something worth knowing that is not an error (on stderr)."""
    print(f"swiftcuda: {line}", file=sys.stderr)


#: ``--workers``'s help in ``segment-many``.
WORKERS_HELP = "Ray workers, each with its own model (default: one per GPU of the cluster, else one)"
#: The options of :func:`add_ray_arguments` other than ``--workers`` (attribute, flag).
PLACEMENT_OPTIONS = (
    ("ray", "--ray"),
    ("gpus_per_worker", "--gpus-per-worker"),
    ("videos_per_worker", "--videos-per-worker"),
)


def add_ray_arguments(parser: argparse.ArgumentParser, workers_help: str = WORKERS_HELP) -> None:
    """The options that place the workers: how many, on which cluster, with how much GPU, how
    many videos each steps together."""
    group = parser.add_argument_group("workers (Ray)")
    group.add_argument("--workers", dest="ray_workers", type=positive_int, default=None, metavar="N", help=workers_help)
    group.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="a running Ray cluster: auto (the one `ray start` runs here) or its address "
        "(default: start a local one on this machine)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=positive_float,
        default=None,
        metavar="F",
        help="GPUs per worker, e.g. 0.5 for two workers a GPU (default: 1 when the cluster has GPUs)",
    )
    group.add_argument(
        "--videos-per-worker",
        type=positive_int,
        default=None,
        metavar="N",
        help="videos each worker steps together, one trunk pass for the current frame of all (videos of one "
        "size share it); a video that ends makes room for the next (default: 4 on a GPU, 1 on a CPU, "
        "where batching does not pay; 1 with --compile)",
    )


def placement(args: argparse.Namespace) -> Placement:
    """Where the Ray workers of parsed arguments run (:func:`add_ray_arguments`)."""
    from swiftcuda.many.driver import Placement

    return Placement(
        address=args.ray,
        workers=args.ray_workers,
        gpus_per_worker=args.gpus_per_worker,
        videos_per_worker=args.videos_per_worker,
    )


def report_problems(problems: list, total: int) -> None:
    """Print one line per sequence that could not be scored, then raise a one-line error."""
    for problem in problems:
        print(f"swiftcuda: {problem}", file=sys.stderr)
    raise InputError(
        f"{len(problems)} of {total} sequence(s) could not be scored (listed above): fix their results "
        "or ground truth, or score the others with --sequences"
    )


def parse_size(text: str) -> tuple[int, int]:
    """argparse type of ``--size``: HxW."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, like 480x864, got {text!r}") from None
    if min(height, width) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive HEIGHTxWIDTH, got {text!r}")
    return height, width
