"""``swiftcuda demo``: segment a held-out test video with the demo weights, draw it, score it."""

from __future__ import annotations

import argparse
from pathlib import Path

from swiftcuda.cli._arguments import internal_size

HELP = "segment a generated test video with the demo weights; write masks, an overlay, and print J&F and FPS"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help=HELP,
        description=(
            "Build a test video from a bundled DAVIS mask sequence the demo weights were not trained on "
            "(real shapes and motion, generated textures), segment it, and write the masks, an overlay "
            "video and a strip of frames; print J&F against the known masks and the engine's FPS."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("swiftcuda-demo"), metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="model precision (auto: fp16 on a GPU, bf16 on a CPU with native bfloat16, else fp32)",
    )
    parser.add_argument("--weights", default="demo", metavar="CKPT", help="weights to use (default: the demo weights)")
    parser.add_argument(
        "--internal-size",
        type=internal_size,
        default="auto",
        metavar="auto|none|S|HxW",
        help="size the engine runs at (default auto: the size recommended for the weights); masks and "
        "scores are at the video's size",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from swiftcuda.demo import run_demo
    from swiftcuda.engine import default_device
    from swiftcuda.precision import dtype_name, resolve_precision
    from swiftcuda.weights import DEMO, DEMO_NOTICE, resolve_device

    if args.weights == DEMO:
        print(f"swiftcuda: {DEMO_NOTICE}")
    device = resolve_device(args.device or default_device())
    dtype = resolve_precision(args.precision, device)
    result = run_demo(
        args.out,
        device=device,
        dtype=dtype,
        weights=args.weights,
        internal_size=args.internal_size,
        overwrite=args.overwrite,
    )
    height, width = result.size
    running_height, running_width = result.running_size
    how = "the weights' recommended internal size" if args.internal_size == "auto" else "--internal-size"
    at = f"at {running_height}x{running_width}, {how}; " if result.running_size != result.size else ""
    print(
        f"{result.sequence}: {result.frames} frames of {height}x{width}, held out of training\n"
        f"J&F {result.j_and_f:.3f} (J {result.j:.3f}, F {result.f:.3f})\n"
        f"{result.fps:.1f} FPS ({at}model time, {device}, {dtype_name(dtype)})\n"
        f"wrote {result.out}/masks, {result.out}/overlay.mp4, {result.out}/strip.png"
    )
    return 0
