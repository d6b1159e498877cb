"""``swiftcuda bench``: end-to-end frames per second against the official code."""

from __future__ import annotations

import argparse
from pathlib import Path

from swiftcuda.errors import InputError

HELP = "measure frames per second of the engine's configurations against the official code"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help=HELP,
        description=(
            "Segment one generated video (real motion from bundled DAVIS masks) with each configuration "
            "in turn and report frames per second, peak memory and label agreement with the float32 "
            "reference, beside the official code's speed."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def internal_size_argument(text: str):
    """argparse type of ``--internal-size``: auto, none, S or HxW."""
    from swiftcuda.inference.rescale import parse_internal_size

    try:
        return parse_internal_size(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from swiftcuda.cli._arguments import parse_size

    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--size", type=parse_size, default=(480, 864), metavar="HxW", help="frame size")
    parser.add_argument("--frames", type=int, default=30, help="frames per run, the first given")
    parser.add_argument("--warmup", type=int, default=3, help="frames not timed after the first")
    parser.add_argument("--objects", default="1", help="comma-separated object counts (1 to 3)")
    parser.add_argument("--weights", default="random", help="checkpoint path, or 'random'")
    parser.add_argument(
        "--configs",
        default=None,
        help="rows as engine:precision:backend:graphs:compiled:winograd|direct:tuned|untuned, comma-separated "
        "(default: the device's standard set)",
    )
    parser.add_argument(
        "--internal-size",
        type=internal_size_argument,
        default=None,
        metavar="auto|none|S|HxW",
        help="size swiftcuda's rows run at (default none: the frame size; auto: the weights' recommended size, "
        "within the device's limit; the heading says which); the official code runs at the frame size",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")


def bench_settings(args: argparse.Namespace):
    """The :class:`~swiftcuda.bench.fps.BenchSettings` of parsed arguments (:func:`add_arguments`)."""
    from swiftcuda.bench.fps import BenchSettings

    return BenchSettings(
        device=args.device,
        size=args.size,
        frames=args.frames,
        warmup=args.warmup,
        objects=tuple(int(v) for v in args.objects.split(",")),
        weights=args.weights,
        configs=args.configs,
        internal_size=args.internal_size,
        threads=args.threads,
    )


def run(args: argparse.Namespace) -> int:
    from swiftcuda.bench.fps import publish
    from swiftcuda.bench.fps import run as run_benchmark

    publish(run_benchmark(bench_settings(args)), args.markdown)
    return 0


def main(argv: list[str] | None = None, prog: str = "bench_fps") -> int:
    """The benchmark as a script of its own (``benchmarks/bench_fps.py``)."""
    from swiftcuda.bench import fps

    parser = argparse.ArgumentParser(prog=prog, description=fps.__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
