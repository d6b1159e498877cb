"""``swiftcuda make-testset``: a DAVIS-layout data set of textured videos of real mask sequences."""

from __future__ import annotations

import argparse
from pathlib import Path

from swiftcuda.cli._arguments import positive_int, sequence_names
from swiftcuda.errors import InputError


def frame_size(text: str) -> int | tuple[int, int]:
    """``HEIGHTxWIDTH`` (as every size of swiftcuda), or ``S``, the shorter side, keeping each
    sequence's aspect."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH (like 90x160) or a shorter side S, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-testset",
        help="make test videos with known masks from real mask sequences",
        description=(
            "Build a DAVIS-layout data set (JPEGImages/480p, Annotations/480p, ImageSets/2017/<set>.txt) "
            "from mask sequences: generated textures painted into each object's mask over a textured "
            "background with its own motion. The annotations are the source masks. Deterministic for a seed."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, metavar="ROOT", help="folder to create")
    parser.add_argument(
        "--masks",
        type=Path,
        default=None,
        metavar="MASKS_ROOT",
        help="folder of mask sequences (default: the 20 DAVIS 2017 sequences shipped with swiftcuda)",
    )
    parser.add_argument("--seed", type=int, default=0, help="appearance seed (default 0)")
    parser.add_argument("--sequences", type=sequence_names, metavar="A,B", help="only these sequences")
    parser.add_argument("--frames", type=positive_int, default=None, metavar="N", help="at most N frames per sequence")
    parser.add_argument("--frame-step", type=positive_int, default=1, metavar="K", help="keep every K-th frame")
    parser.add_argument(
        "--size",
        type=frame_size,
        default=None,
        metavar="HxW|S",
        help="resize to HEIGHTxWIDTH, or to the shorter side S keeping the aspect",
    )
    parser.add_argument(
        "--random-shapes",
        type=positive_int,
        default=None,
        metavar="N",
        help=(
            "instead of mask sequences, N videos of random moving shapes (training data: unlimited shapes); "
            "--frames sets their length (default 12) and --size HxW their size (default 272x480)"
        ),
    )
    parser.add_argument("--set", default="val", dest="set_name", help="name of the sequence list (default val)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing ROOT")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from swiftcuda.data.testset import make_shapes_testset, make_testset

    if args.random_shapes is not None:
        if args.masks is not None or args.sequences is not None:
            raise InputError("--random-shapes makes its own shapes: drop --masks and --sequences")
        size = args.size if args.size is not None else (272, 480)
        if isinstance(size, int):
            raise InputError("--random-shapes needs --size as HEIGHTxWIDTH, like 272x480")
        testset = make_shapes_testset(
            args.out,
            args.random_shapes,
            seed=args.seed,
            frames=args.frames or 12,
            size=size,
            set_name=args.set_name,
            overwrite=args.overwrite,
            progress=None,
        )
        print(f"wrote {len(testset.sequences)} random-shape sequence(s) to {testset.root}")
        return 0
    testset = make_testset(
        args.out,
        args.masks,
        sequences=args.sequences,
        seed=args.seed,
        max_frames=args.frames,
        frame_step=args.frame_step,
        size=args.size,
        set_name=args.set_name,
        overwrite=args.overwrite,
        progress=None,
    )
    print(f"wrote {len(testset.sequences)} sequence(s) to {testset.root}: {', '.join(testset.sequences)}")
    return 0
