"""``swiftcuda eval``: run the engine over a DAVIS or YouTube-VOS data set; score DAVIS, time both.

DAVIS: results go to ``OUT/<sequence>/<frame>.png`` and are scored like ``swiftcuda score`` (the
toolkit's CSV tables in OUT), with each sequence's frames per second of model time beside its
J&F (``timing-<set>.csv``). YouTube-VOS: a submission folder ``OUT/Annotations/<video>/<frame>.png``
and ``OUT/submission.zip`` for the evaluation server (its ground truth is not public).

With ``--workers N`` (DAVIS only) the sequences are segmented on N Ray workers, the path of
``swiftcuda segment-many``; without it, in this process. ``--score-workers`` sets the scoring processes.
"""

from __future__ import annotations

import argparse
import math
import sys
import zipfile
from pathlib import Path

from swiftcuda.cli._arguments import (
    PLACEMENT_OPTIONS,
    add_engine_arguments,
    add_ray_arguments,
    engine_options,
    notify,
    placement,
    positive_int,
    report_problems,
    sequence_names,
)
from swiftcuda.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="run the engine over DAVIS (scored, timed) or YouTube-VOS (submission)",
        description=(
            "Segment every sequence of a DAVIS set from its first-frame annotation and score the results "
            "(J&F, as swiftcuda score) with frames per second of model time; or segment the YouTube-VOS "
            "validation videos (objects may appear after the first frame) into a submission folder."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--davis", type=Path, metavar="ROOT", help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets)"
    )
    source.add_argument(
        "--youtube",
        type=Path,
        metavar="ROOT",
        help="YouTube-VOS root (valid/JPEGImages, valid/Annotations, valid/meta.json)",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="results folder to create")
    parser.add_argument(
        "--set", default="val", dest="set_name", help="DAVIS set (ImageSets/<year>/<set>.txt; default val)"
    )
    parser.add_argument(
        "--year", choices=("2017", "2016"), default="2017", help="DAVIS 2017 (multi-object) or 2016 (single)"
    )
    parser.add_argument("--split", default="valid", help="YouTube-VOS split folder (default valid)")
    parser.add_argument("--sequences", type=sequence_names, metavar="A,B", help="only these sequences or videos")
    parser.add_argument(
        "--warmup", type=int, default=3, metavar="N", help="untimed frames run before timing (default 3)"
    )
    parser.add_argument(
        "--score-workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="scoring processes (default: one per CPU); --workers is the segmentation's Ray workers",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing results folder")
    parser.add_argument(
        "--method",
        choices=("swiftcuda", "copy-first-mask"),
        default="swiftcuda",
        help="copy-first-mask: the no-tracking baseline (every frame gets the first mask), for comparison",
    )
    add_ray_arguments(
        parser,
        workers_help="segment the sequences on N Ray workers, as segment-many does (DAVIS only; needs "
        "pip install swiftcuda[ray]); FPS then counts each worker's whole time on a sequence. Default: "
        "segment in this process, without Ray. The scoring processes are --score-workers",
    )
    add_engine_arguments(parser)
    parser.set_defaults(run=run)


def _check_all(names: list[str], load) -> list:
    """Load every sequence's description, or print a line per one that cannot be used and raise."""
    from swiftcuda.metrics import SequenceProblem

    items, problems = [], []
    for name in names:
        try:
            items.append(load(name))
        except InputError as error:
            problems.append(SequenceProblem(name, error.command_line_message()))
    if problems:
        for problem in problems:
            print(f"swiftcuda: {problem}", file=sys.stderr)
        raise InputError(
            f"{len(problems)} of {len(names)} sequence(s) cannot be run (listed above): fix the data set, "
            "or choose the others with --sequences"
        )
    return items


def _chosen(available: list[str], chosen: list[str] | None, where: str) -> list[str]:
    if chosen is None:
        return available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise InputError(f"not in {where}: {', '.join(unknown)}: choose among the listed sequences")
    return chosen


def _method(args: argparse.Namespace):
    """The segmenter the options ask for, or the copy-first-mask baseline."""
    if args.method == "copy-first-mask":
        from swiftcuda.inference.baselines import CopyFirstMask

        return CopyFirstMask()
    from swiftcuda.engine import build_segmenter

    return build_segmenter(engine_options(args), notify=notify)


def run(args: argparse.Namespace) -> int:
    if args.ray_workers is None:
        given = [flag for name, flag in PLACEMENT_OPTIONS if getattr(args, name) is not None]
        if given:
            raise InputError(f"{given[0]} places Ray workers: add --workers N to segment on Ray, or leave it out")
    elif args.youtube is not None:
        # YouTube-VOS objects appear after the first frame: the workers' loop takes first-frame masks only.
        raise InputError("--workers (Ray) works with --davis only: leave it out for --youtube")
    return run_davis(args) if args.davis is not None else run_youtube(args)


def run_davis(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from swiftcuda.data.davis import DavisDataset
    from swiftcuda.io.masks import write_mask
    from swiftcuda.io.output import check_writable_target, staged_directory
    from swiftcuda.metrics.benchmark import segment_video, warm_up

    dataset = DavisDataset(args.davis, args.set_name, args.year)
    names = _chosen(dataset.sequences, args.sequences, f"ImageSets/{args.year}/{args.set_name}.txt")
    sequences = _check_all(names, dataset.sequence)
    check_writable_target(args.out, args.overwrite, "output folder", folder=True)
    if args.ray_workers is not None:
        if args.method != "swiftcuda":
            raise InputError(f"--workers runs the engine on Ray, not --method {args.method}: leave one of them out")
        with staged_directory(args.out, overwrite=args.overwrite) as staging:
            runs = _segment_on_ray(args, sequences, staging, dataset.single_object)
        return _score_davis(args, dataset, names, runs)
    segmenter = _method(args)
    warm_up(segmenter, sequences[0].image_paths, sequences[0].first_mask(warn=False), args.warmup)
    runs = []
    with staged_directory(args.out, overwrite=args.overwrite) as staging:
        for sequence in tqdm(sequences, desc="segmenting", unit="seq", leave=False, disable=None):
            folder = staging / sequence.name
            folder.mkdir()
            names_of = sequence.frame_names

            def save(index: int, labels, folder=folder, names_of=names_of) -> None:
                write_mask(folder / f"{names_of[index]}.png", labels)

            runs.append(segment_video(segmenter, sequence.name, sequence.image_paths, {0: sequence.first_mask()}, save))
    return _score_davis(args, dataset, names, runs)


def _segment_on_ray(args: argparse.Namespace, sequences: list, folder: Path, single_object: bool) -> list:
    """Segment the sequences into ``folder/<sequence>/`` on Ray workers, as ``segment-many`` does;
    their runs count each worker's whole time on a sequence (decoding and writing included).

    Raises:
        InputError: a sequence could not be segmented (the first one's reason).
    """
    from swiftcuda.many.driver import segment_many
    from swiftcuda.many.inputs import VideoItem
    from swiftcuda.metrics.benchmark import VideoRun

    mask_format = "davis2016" if single_object else "davis"
    items = [
        VideoItem(s.name, s.image_paths[0].parent, s.annotation_paths[s.frame_names[0]], mask_format) for s in sequences
    ]
    results = segment_many(items, folder, engine_options(args), placement(args), notify=notify)
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise InputError(f"{len(failed)} sequence(s) could not be segmented; {failed[0].video}: {failed[0].error}")
    return [VideoRun(r.video, r.frames, r.seconds) for r in results]


def _score_davis(args: argparse.Namespace, dataset, names: list[str], runs: list) -> int:
    from swiftcuda import metrics

    options = metrics.ScoreOptions(single_object=dataset.single_object)
    evaluation = metrics.evaluate(
        dataset.annotations_root, args.out, names, options=options, workers=args.score_workers, progress=None
    )
    if evaluation.problems:
        report_problems(evaluation.problems, len(names))
    summary = evaluation.summary()
    metrics.write_tables(summary, args.out, args.set_name, overwrite=True)
    _write_timing(args.out / f"timing-{args.set_name}.csv", runs)
    print(format_davis_report(summary, runs, args.set_name, args.year))
    print(f"\nresults and tables in {args.out}")
    return 0


def _write_timing(path: Path, runs) -> None:
    from swiftcuda.metrics.benchmark import overall_fps
    from swiftcuda.metrics.report import write_csv

    rows = [(r.name, r.frames, r.seconds, r.fps) for r in runs]
    rows.append(("all", sum(r.frames for r in runs), sum(r.seconds for r in runs), overall_fps(runs)))
    write_csv(path, ("Sequence", "Frames", "Seconds", "FPS"), rows, overwrite=True)


def format_davis_report(summary, runs, set_name: str, year: str) -> str:
    """Per-sequence J&F beside FPS, then the overall row and the toolkit's global table."""
    from swiftcuda.metrics.benchmark import overall_fps
    from swiftcuda.metrics.report import GLOBAL_COLUMNS, format_table

    means = summary.sequence_means()
    rows = []
    for r in runs:
        j, f = means.get(r.name, (math.nan, math.nan))
        rows.append((r.name, r.frames, r.fps, (j + f) / 2, j, f))
    overall = summary.global_row()
    rows.append(
        (
            "overall",
            sum(r.frames for r in runs),
            overall_fps(runs),
            overall["J&F-Mean"],
            overall["J-Mean"],
            overall["F-Mean"],
        )
    )
    columns = ("Sequence", "Frames", "FPS", "J&F-Mean", "J-Mean", "F-Mean")
    return "\n".join(
        [
            f"DAVIS {year} {set_name}: J&F and frames per second (model time)",
            format_table(columns, rows),
            "",
            f"Global results for {set_name}",
            format_table(GLOBAL_COLUMNS, [[overall[c] for c in GLOBAL_COLUMNS]]),
        ]
    )


def run_youtube(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from swiftcuda.data.youtube import YouTubeVOSDataset
    from swiftcuda.io.masks import write_mask
    from swiftcuda.io.output import check_writable_target, staged_directory
    from swiftcuda.metrics.benchmark import overall_fps, segment_video, warm_up
    from swiftcuda.metrics.report import format_table

    dataset = YouTubeVOSDataset(args.youtube, args.split)
    names = _chosen(dataset.videos, args.sequences, f"{dataset.split_root}")
    videos = _check_all(names, dataset.video)
    check_writable_target(args.out, args.overwrite, "output folder", folder=True)
    segmenter = _method(args)
    runs = []
    with staged_directory(args.out, overwrite=args.overwrite) as staging:
        warmed = False
        for video in tqdm(videos, desc="segmenting", unit="video", leave=False, disable=None):
            given = video.new_object_masks()
            if not given:
                print(
                    f"swiftcuda: {video.name}: no object in its annotations; its frames are left empty", file=sys.stderr
                )
            elif not warmed:
                first = min(given)
                warm_up(segmenter, video.image_paths[first:], given[first], args.warmup)
                warmed = True
            folder = staging / "Annotations" / video.name
            folder.mkdir(parents=True)
            frame_names = video.frame_names

            def save(index: int, labels, folder=folder, frame_names=frame_names) -> None:
                write_mask(folder / f"{frame_names[index]}.png", labels)

            runs.append(segment_video(segmenter, video.name, video.image_paths, given, save))
        _zip_submission(staging / "Annotations", staging / "submission.zip")
    rows = [(r.name, r.frames, r.fps) for r in runs]
    rows.append(("overall", sum(r.frames for r in runs), overall_fps(runs)))
    print(f"YouTube-VOS {args.split}: frames per second (model time)")
    print(format_table(("Video", "Frames", "FPS"), rows))
    print(
        f"\nsubmission in {args.out}: upload {args.out / 'submission.zip'} (Annotations/<video>/<frame>.png) "
        "to the YouTube-VOS evaluation server; its ground truth is not public, so nothing is scored here"
    )
    return 0


def _zip_submission(annotations: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(annotations.rglob("*.png")):
            archive.write(path, Path("Annotations") / path.relative_to(annotations))
