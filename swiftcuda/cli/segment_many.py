"""``swiftcuda segment-many``: segment many videos on Ray workers, resumably
(:func:`swiftcuda.many.driver.segment_many`, also the path of ``swiftcuda eval --davis ROOT --workers N``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from swiftcuda.cli._arguments import add_engine_arguments, add_ray_arguments, engine_options, notify, placement

HELP = "segment many videos (a DAVIS-layout folder or a manifest) on Ray workers, resumably"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment-many",
        help=HELP,
        description=(
            "Segment every video of ROOT, a DAVIS-layout folder (JPEGImages/480p/<video>, the first mask in "
            "Annotations/480p/<video>) or a manifest (CSV or JSON lines: frames folder or video file, first mask, "
            "optional output name), on Ray workers. Writes DIR/<video>/<frame>.png as `swiftcuda segment` does, and "
            "DIR/summary.jsonl. Rerunning the command skips the videos already done; Ctrl-C stops cleanly."
        ),
    )
    parser.add_argument("root", metavar="ROOT", type=Path, help="DAVIS-layout folder, or a .csv / .jsonl manifest")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the masks and summary.jsonl")
    parser.add_argument("--overwrite", action="store_true", help="segment every video again, replacing what is there")
    add_ray_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from swiftcuda.many.driver import segment_many
    from swiftcuda.many.inputs import check_outputs_spare_inputs, discover

    items = discover(args.root)
    check_outputs_spare_inputs(items, args.out)
    started = time.perf_counter()
    results = segment_many(
        items, args.out, engine_options(args), placement(args), overwrite=args.overwrite, notify=notify
    )
    seconds = time.perf_counter() - started
    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed")}
    for result in results:
        if result.status == "failed":
            print(f"swiftcuda: {result.video}: {result.error}", file=sys.stderr)
    frames = sum(r.frames for r in results if r.status == "done")
    print(
        f"segmented {counts['done']} videos ({frames} frames) in {seconds:.1f} s, "
        f"{counts['skipped']} done before, {counts['failed']} failed -> {args.out} (summary.jsonl)"
    )
    return 1 if counts["failed"] else 0
