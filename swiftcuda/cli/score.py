"""``swiftcuda score``: J&F of a results folder against DAVIS-layout ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from swiftcuda.cli._arguments import positive_int, report_problems, sequence_names
from swiftcuda.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score results with the DAVIS 2017 measures (J, F)",
        description=(
            "Score a folder of results (RESULTS/<sequence>/<frame>.png, indexed PNGs) against ground "
            "truth laid out alike, as the DAVIS 2017 semi-supervised evaluation does: J and F per "
            "object and frame (first and last frames excluded, void 255 ignored), their mean, recall "
            "and decay. Writes global_results-<set>.csv and per-sequence_results-<set>.csv."
        ),
    )
    parser.add_argument(
        "--gt",
        required=True,
        type=Path,
        metavar="GT_ROOT",
        help="ground truth: a folder of sequence folders, or a DAVIS root (its Annotations/480p is used)",
    )
    parser.add_argument("--results", required=True, type=Path, metavar="RES_ROOT", help="folder of result sequences")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where the CSV tables go (default: RES_ROOT)")
    parser.add_argument("--set", default="val", dest="set_name", help="set name in the CSV names and ImageSets list")
    parser.add_argument(
        "--year",
        choices=("2017", "2016"),
        default="2017",
        help="2016 scores every nonzero label as one object (DAVIS 2016 is single-object)",
    )
    parser.add_argument("--sequences", type=sequence_names, metavar="A,B", help="score only these sequences")
    parser.add_argument(
        "--void",
        choices=("ignore", "background"),
        default="ignore",
        help="ground-truth pixels labelled 255: ignored (default) or counted as background",
    )
    parser.add_argument("--workers", type=positive_int, default=None, help="parallel processes (default: one per CPU)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing CSV tables")
    parser.set_defaults(run=run)


def resolve_sequences(gt: Path, set_name: str, year: str, chosen: list[str] | None) -> tuple[Path, list[str]]:
    """The ground-truth folder of sequences and the sequences to score.

    A DAVIS root gives ``Annotations/480p`` and, when present, the list ``ImageSets/<year>/<set>.txt``.
    """
    from swiftcuda.data.davis import annotation_folder, read_sequence_list
    from swiftcuda.metrics import list_sequences

    truth_root = annotation_folder(gt)
    if chosen is not None:
        return truth_root, chosen
    if truth_root != gt and (gt / "ImageSets" / year / f"{set_name}.txt").is_file():
        return truth_root, read_sequence_list(gt, set_name, year)
    return truth_root, list_sequences(truth_root)


def run(args: argparse.Namespace) -> int:
    from swiftcuda import metrics

    if not args.gt.is_dir():
        raise InputError(f"ground-truth folder not found: {args.gt}")
    if not args.results.is_dir():
        raise InputError(f"results folder not found: {args.results}")
    truth_root, names = resolve_sequences(args.gt, args.set_name, args.year, args.sequences)
    options = metrics.ScoreOptions(void=args.void, single_object=args.year == "2016")
    out = args.out or args.results
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: choose a folder for the CSV tables")
    for path in metrics.csv_paths(out, args.set_name):
        if path.exists() and not args.overwrite:
            raise InputError(f"{path} already exists: pass --overwrite to replace it, or choose --out")
    evaluation = metrics.evaluate(truth_root, args.results, names, options=options, workers=args.workers, progress=None)
    if evaluation.problems:
        report_problems(evaluation.problems, len(names))
    summary = evaluation.summary()
    global_path, sequence_path = metrics.write_tables(summary, out, args.set_name, overwrite=args.overwrite)
    print(metrics.format_report(summary, args.set_name))
    print(f"\nwrote {global_path} and {sequence_path}")
    return 0
