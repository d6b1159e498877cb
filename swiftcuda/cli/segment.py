"""``swiftcuda segment``: segment a video given its first frame's mask."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from swiftcuda.cli._engine import add_engine_arguments, load_engine_model, make_segmenter
from swiftcuda.errors import InputError

HELP = "segment the objects of a first-frame mask through a video"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help=HELP,
        description=(
            "Segment the objects of FIRST.png through INPUT (a folder of frames, sorted by name, or a "
            "video file). Writes one indexed PNG (DAVIS palette) per frame, named after the frame."
        ),
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="folder of frames (jpg/png) or a video file")
    parser.add_argument("--mask", required=True, type=Path, metavar="FIRST.png", help="labels of the first frame")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the masks")
    parser.add_argument("--overlay", type=Path, metavar="OUT.mp4", help="also write the frames with masks drawn over them")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse outputs that would replace the inputs, even with --overwrite."""
    if _is_within(args.input, args.out):
        raise InputError(f"--out {args.out} would replace the input {args.input}: choose another output folder")
    if _is_within(args.mask, args.out):
        raise InputError(f"--out {args.out} would replace the mask {args.mask}: choose another output folder")
    if args.overlay is not None and args.overlay.resolve() in (args.input.resolve(), args.mask.resolve()):
        raise InputError(f"--overlay {args.overlay} would replace an input: choose another file")


def run(args: argparse.Namespace) -> int:
    # Imports that pull in heavy modules stay here, so that `swiftcuda --help` is quick.
    from tqdm import tqdm

    from swiftcuda.inference.host_copy import LabelCopier
    from swiftcuda.io.frames import FrameSource
    from swiftcuda.io.masks import read_mask, write_mask
    from swiftcuda.io.output import check_writable_target, staged_directory, staged_file
    from swiftcuda.io.overlay import OverlayVideoWriter, draw_overlay

    _check_paths(args)
    source = FrameSource(args.input)
    names = source.names
    if names is not None and len(set(names)) != len(names):
        raise InputError(f"two frames in {args.input} share a name (e.g. a .jpg and a .png): outputs would collide")
    labels = read_mask(args.mask)
    if not labels.any():
        raise InputError(f"mask {args.mask} has no objects (every pixel is 0): label the objects 1, 2, ...")
    check_writable_target(args.out, args.overwrite, "output folder")
    overlay_inside_out = args.overlay is not None and _is_within(args.overlay, args.out)
    if args.overlay is not None and not overlay_inside_out:
        check_writable_target(args.overlay, args.overwrite, "overlay")
    model = load_engine_model(args)
    segmenter = make_segmenter(model, args)

    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(staged_directory(args.out, overwrite=args.overwrite))
        writer = None
        if args.overlay is not None:
            if overlay_inside_out:
                overlay_path = staging / args.overlay.resolve().relative_to(args.out.resolve())
                overlay_path.parent.mkdir(parents=True, exist_ok=True)
            else:
                overlay_path = stack.enter_context(staged_file(args.overlay, overwrite=args.overwrite))
            writer = stack.enter_context(OverlayVideoWriter(overlay_path, source.fps))
        copier = LabelCopier(segmenter.device)
        count, started = 0, time.perf_counter()
        progress = stack.enter_context(tqdm(total=len(source) or None, unit="frame", desc="segment"))

        def save(done: list) -> None:
            for frame, predicted in done:
                write_mask(staging / f"{frame.name}.png", predicted)
                if writer is not None:
                    writer.write(draw_overlay(frame.image, predicted))
                progress.update()

        for frame in source:
            if frame.index == 0 and frame.image.shape[:2] != labels.shape:
                raise InputError(
                    f"mask {args.mask} is {labels.shape[0]}x{labels.shape[1]} but frame {frame.name} is "
                    f"{frame.image.shape[0]}x{frame.image.shape[1]}: give the first frame's mask"
                )
            probs = segmenter.step(frame.image, mask=labels if frame.index == 0 else None)
            # On a GPU the labels come back one frame later, while the next frame is decoded.
            save(copier.push(frame, segmenter.to_labels(probs)))
            count += 1
        save(copier.drain())
        seconds = time.perf_counter() - started
    print(
        f"segmented {count} frames, {len(segmenter.object_ids)} objects, in {seconds:.1f} s "
        f"({count / seconds:.1f} FPS, decoding and writing included) -> {args.out}"
    )
    return 0
