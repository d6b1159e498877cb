"""``swiftcuda export --onnx``: the per-frame step as ONNX graphs with the memory as explicit state."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from swiftcuda.cli._arguments import engine_weights, positive_int

HELP = "export the per-frame step to ONNX (four graphs and a JSON sidecar) for runtimes outside Python"


def register(subparsers: argparse._SubParsersAction) -> None:
    from swiftcuda.cli._arguments import parse_size

    parser = subparsers.add_parser(
        "export",
        help=HELP,
        description=(
            "Write the per-frame step as four ONNX graphs (encode_query, read_and_decode, encode_memory, "
            "update_memory) whose memory (long-term keys and values at a fixed capacity, their valid "
            "lengths, the previous-frame slot) is explicit input and output, so that any runtime carries "
            "the state between calls, and a JSON sidecar describing inputs, outputs, the state layout and "
            "the step's protocol. Frame size, object count and capacity stay dynamic in the graphs. "
            "Needs the onnx extra: pip install swiftcuda[onnx]."
        ),
    )
    parser.add_argument("--onnx", required=True, type=Path, metavar="OUT_DIR", help="folder to write the graphs into")
    parser.add_argument(
        "--weights",
        metavar="CKPT",
        help="SwiftNet checkpoint (official or swiftcuda); default: the demo weights, trained on synthetic videos",
    )
    parser.add_argument("--variant", choices=("r18", "r50"), default="r18", help="backbone of the checkpoint")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=(480, 864),
        metavar="HxW",
        help="padded frame size of the traced example and the sidecar, multiples of 16 (default 480x864)",
    )
    parser.add_argument("--objects", type=positive_int, default=2, help="objects in the traced example (default 2)")
    parser.add_argument(
        "--capacity",
        type=positive_int,
        default=None,
        help="long-term memory entries per object recorded in the sidecar (default: the engine's for --size)",
    )
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="weights and memory state")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from swiftcuda.io.output import check_writable_target
    from swiftcuda.onnx.dependencies import require_onnx
    from swiftcuda.onnx.export import check_export_options, export_onnx
    from swiftcuda.weights import load_model

    # Cheap checks first: a bad option or a missing extra is reported before the model loads.
    require_onnx(export=True)
    check_export_options(args.size, args.objects, args.capacity, args.precision)
    check_writable_target(args.onnx, args.overwrite, "output folder", folder=True)
    weights = engine_weights(args)
    model = load_model(weights, device="cpu", dtype=torch.float32, variant=args.variant)
    started = time.perf_counter()
    sidecar = export_onnx(
        model,
        args.onnx,
        size=args.size,
        objects=args.objects,
        capacity=args.capacity,
        precision=args.precision,
        overwrite=args.overwrite,
        weights=str(weights),
    )
    seconds = time.perf_counter() - started
    print(
        f"exported the step of SwiftNet-{args.variant.upper()} ({args.precision}) in {seconds:.0f} s "
        f"-> {sidecar.parent} (inputs, outputs and state: {sidecar.name})"
    )
    return 0
