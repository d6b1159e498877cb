"""Predicted (roofline) times of SwiftNet's kernels and of a whole frame on an H100 SXM and an H200.

No GPU is needed: the kernels' costs come from formulas and the model's convolutions from a trace
on the ``meta`` device (see :mod:`tools.roofline` for the model, its constants and their
sources). The first GPU run compares what it measures with these tables. Usage::

    python benchmarks/roofline.py
    python benchmarks/roofline.py --markdown benchmarks/roofline.md --launch-us 1.0
    python benchmarks/roofline.py --layers r50   # every convolution of an R50 step
    python benchmarks/roofline.py --family       # also the STM family's top-k reads (XMem, Cutie, STCN)
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ is not installed: import it from the tree

from tools import roofline as rl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["r18", "r50"], choices=["r18", "r50"])
    parser.add_argument("--objects", nargs="+", type=int, default=[1, 5])
    parser.add_argument(
        "--memory",
        nargs="+",
        type=int,
        default=[1, 5, 20, 0],
        help="frames in the long-term memory; 0 = at capacity (the steady state)",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["fp16", "fp32"],
        choices=["fp32", "fp16", "bf16"],
        help="kernel-table dtypes (bf16 has fp16's figures)",
    )
    parser.add_argument("--frame-dtype", default="fp16", choices=["fp32", "fp16", "bf16"])
    parser.add_argument(
        "--launch-us",
        type=float,
        default=rl.DEFAULT_LAUNCH_US,
        help="assumed cost of one kernel launch in µs (to be measured)",
    )
    parser.add_argument("--update-every", type=int, default=5, help="official schedule's update period")
    parser.add_argument("--layers", choices=["r18", "r50"], help="also print every convolution of a step")
    parser.add_argument(
        "--family", action="store_true", help="also the STM family's reads (XMem, Cutie, STCN) at their 480p shapes"
    )
    parser.add_argument("--markdown", type=Path, help="append the report to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    summary, stages, layers = rl.frame_summary(
        args.variants, args.objects, args.memory, args.frame_dtype, args.launch_us, args.update_every
    )
    memories = ", ".join("capacity" if m == 0 else f"{m} frames" for m in args.memory)
    parts = [
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; 480x854 padded to 480x864, "
        f"P = 1620 query pixels; objects {args.objects}; memories {memories}; launch overhead "
        f"{args.launch_us} µs per kernel (assumed); official schedule (one update in {args.update_every} frames)",
        "### Kernels (compulsory traffic, roofline time)",
        rl.kernel_tables(args.variants, args.objects, args.memory, args.dtypes),
        f"### Whole frame ({args.frame_dtype}, eager step: every convolution, every ATen op, every fused kernel)",
        summary,
        rl.assumption_notes(args.launch_us),
        "#### Where the time goes",
        stages,
        "#### Slowest convolutions",
        layers,
    ]
    if args.family:
        parts += [
            "### The STM family's reads (480p, P = 1620; keys shared by the objects, values per object)",
            rl.family_tables(args.objects, args.dtypes),
        ]
    if args.layers:
        parts += [
            f"#### Every convolution of a {args.layers} step, {args.objects[-1]} objects",
            rl.conv_layer_table(args.layers, args.objects[-1], args.frame_dtype),
        ]
    report = "\n\n".join(parts) + "\n"
    print(report)
    if args.markdown is not None:
        with args.markdown.open("a", encoding="utf-8") as out:
            out.write("\n" + report)


if __name__ == "__main__":
    main()
