"""``swiftcuda bench``: end-to-end frames per second against the official code."""

from __future__ import annotations

import argparse

HELP = "measure frames per second of the engine's configurations against the official code"


def register(subparsers: argparse._SubParsersAction) -> None:
    from swiftcuda.bench.fps import add_arguments

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


def run(args: argparse.Namespace) -> int:
    from swiftcuda.bench.fps import publish
    from swiftcuda.bench.fps import run as run_benchmark

    publish(run_benchmark(args), args.markdown)
    return 0
