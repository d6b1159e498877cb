"""``swiftcuda segment``: segment a video given its first frame's mask."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from swiftcuda.cli._arguments import add_engine_arguments, engine_options, notify
from swiftcuda.errors import FrameReadError, InputError

HELP = "segment the objects of a first-frame mask through a video"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help=HELP,
        description=(
            "Segment the objects of FIRST.png through INPUT (a folder of frames, sorted by name, or a "
            "video file). Writes one indexed PNG (DAVIS palette) per frame, named after the frame. "
            "With --live SOURCE instead of INPUT, segments the newest frame of a camera, stream or video "
            "file as it arrives, dropping the frames that come during a step. The frame files are checked "
            "(headers and sizes) before the first step; a frame that still cannot be decoded when reached "
            "stops the run, keeping the masks of the frames before it."
        ),
    )
    parser.add_argument(
        "input", metavar="INPUT", type=Path, nargs="?", help="folder of frames (jpg/png) or a video file"
    )
    parser.add_argument(
        "--live",
        metavar="SOURCE",
        help="segment live instead: a camera index (0), an rtsp:// or http:// URL, or a video file played at its "
        "frame rate; masks are named by source frame index",
    )
    parser.add_argument("--no-window", action="store_true", help="with --live, show no preview window")
    parser.add_argument("--mask", required=True, type=Path, metavar="FIRST.png", help="labels of the first frame")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the masks")
    parser.add_argument(
        "--overlay", type=Path, metavar="OUT.mp4", help="also write the frames with masks drawn over them"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_engine_arguments(parser)
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default="torch",
        help="torch: the engine; onnx: the step exported to ONNX (once, into a cache) and run on ONNX Runtime, "
        "fp32 or fp16 (needs pip install swiftcuda[onnx]; --backend, --compile and the convolution options are torch's)",
    )
    parser.set_defaults(run=run)


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_source_choice(args: argparse.Namespace) -> None:
    """Exactly one of INPUT and --live."""
    if args.input is None and args.live is None:
        raise InputError(
            "give INPUT or --live SOURCE: frames or a video to segment, or a camera, stream or file to segment live"
        )
    if args.input is not None and args.live is not None:
        raise InputError(f"give INPUT or --live SOURCE, not both ({args.input} and --live {args.live})")


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse outputs that would replace the inputs, even with --overwrite."""
    from swiftcuda.live.capture import live_source_file

    source = args.input if args.live is None else live_source_file(args.live)
    if source is not None and _is_within(source, args.out):
        raise InputError(f"--out {args.out} would replace the input {source}: choose another output folder")
    if _is_within(args.mask, args.out):
        raise InputError(f"--out {args.out} would replace the mask {args.mask}: choose another output folder")
    inputs = [path.resolve() for path in (source, args.mask) if path is not None]
    if args.overlay is not None and args.overlay.resolve() in inputs:
        raise InputError(f"--overlay {args.overlay} would replace an input: choose another file")


def run(args: argparse.Namespace) -> int:
    # Imports that pull in heavy modules stay here, so that `swiftcuda --help` is quick.
    from tqdm import tqdm

    from swiftcuda.engine import build_segmenter
    from swiftcuda.inference.video import frame_mask_path, open_video, segment_frames
    from swiftcuda.io.masks import write_mask
    from swiftcuda.io.output import check_writable_target, staged_directory, staged_file
    from swiftcuda.io.overlay import OverlayVideoWriter, draw_overlay

    _check_source_choice(args)
    _check_paths(args)
    if args.live is not None:
        from swiftcuda.io.masks import read_object_mask
        from swiftcuda.live import check_mask_size, open_live_source

        # The live capture has the video source's fps; the segmenter checks the mask has objects.
        source, labels = open_live_source(args.live), read_object_mask(args.mask)
        check_mask_size(source, labels)
    else:
        source, labels = open_video(args.input, args.mask)
    check_writable_target(args.out, args.overwrite, "output folder", folder=True)
    overlay_inside_out = args.overlay is not None and _is_within(args.overlay, args.out)
    if args.overlay is not None and not overlay_inside_out:
        check_writable_target(args.overlay, args.overwrite, "overlay", folder=False)
    segmenter = build_segmenter(engine_options(args), notify=notify)

    cut_short: FrameReadError | None = None
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
        if args.live is not None:
            from swiftcuda.live import open_preview, run_live

            window = None if args.no_window else open_preview(f"swiftcuda {args.live} (q: stop)")
            if window is not None:
                stack.callback(window.close)
            report = run_live(source, segmenter, labels, staging, overlay=writer, window=window)
            summary = f"live: {report.describe()}"
        else:
            started = time.perf_counter()
            progress = stack.enter_context(tqdm(total=len(source) or None, unit="frame", desc="segment"))

            def save(frame, predicted) -> None:
                write_mask(frame_mask_path(staging, frame), predicted)
                if writer is not None:
                    writer.write(draw_overlay(frame.image, predicted))
                progress.update()

            try:
                count = segment_frames(segmenter, source, labels, save, mask_origin=args.mask)
            except FrameReadError as error:
                if not error.frames_done:
                    raise
                # Minutes of masks are not thrown away for one damaged frame: they are kept, and
                # the error says so.
                cut_short, count = error, error.frames_done
            seconds = time.perf_counter() - started
            summary = (
                f"segmented {count} frames, {len(segmenter.object_ids)} objects, in {seconds:.1f} s "
                f"({count / seconds:.1f} FPS, decoding and writing included)"
            )
    if cut_short is not None:
        raise InputError(
            f"{cut_short}; the masks of the {count} frames before it are in {args.out}"
            + (f" (and their overlay in {args.overlay})" if args.overlay is not None else "")
            + ": repair or remove that frame and run again with --overwrite"
        )
    print(f"{summary}{_size_note(segmenter)} -> {args.out}")
    return 0


def _size_note(segmenter) -> str:
    """Where the engine ran at another size than the frames', which (masks are at the frames' size)."""
    running, frames = getattr(segmenter, "running_size", None), getattr(segmenter, "frame_size", None)
    if running is None or running == frames:
        return ""
    return f", segmented at {running[0]}x{running[1]} (--internal-size none for {frames[0]}x{frames[1]})"
