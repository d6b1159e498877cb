"""``swiftcuda segment-many``: segment many videos on Ray workers, resumably.

Also the path ``swiftcuda eval --davis ROOT --workers N`` takes (:func:`segment_on_ray`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from swiftcuda.cli._engine import add_engine_arguments, positive_int
from swiftcuda.errors import InputError

HELP = "segment many videos (a DAVIS-layout folder or a manifest) on Ray workers, resumably"


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


#: ``--workers``'s help in ``segment-many``.
WORKERS_HELP = "Ray workers, each with its own model (default: one per GPU of the cluster, else one)"
#: The options of :func:`add_ray_arguments` other than ``--workers`` (attribute, flag).
PLACEMENT_OPTIONS = (
    ("ray", "--ray"), ("gpus_per_worker", "--gpus-per-worker"), ("videos_per_worker", "--videos-per-worker"),
)


def add_ray_arguments(parser: argparse.ArgumentParser, workers_help: str = WORKERS_HELP) -> None:
    """The options that place the workers: how many, on which cluster, with how much GPU, how
    many videos each steps together."""
    group = parser.add_argument_group("workers (Ray)")
    group.add_argument("--workers", dest="ray_workers", type=positive_int, default=None, metavar="N", help=workers_help)
    group.add_argument(
        "--ray", metavar="ADDRESS", default=None,
        help="a running Ray cluster: auto (the one `ray start` runs here) or its address "
        "(default: start a local one on this machine)",
    )
    group.add_argument(
        "--gpus-per-worker", type=positive_float, default=None, metavar="F",
        help="GPUs per worker, e.g. 0.5 for two workers a GPU (default: 1 when the cluster has GPUs)",
    )
    group.add_argument(
        "--videos-per-worker", type=positive_int, default=None, metavar="N",
        help="videos each worker steps together, one trunk pass for the current frame of all (videos of one "
        "size share it); a video that ends makes room for the next (default: 4 on a GPU, 1 on a CPU, "
        "where batching does not pay; 1 with --compile)",
    )


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
    from swiftcuda.many.inputs import check_outputs_spare_inputs, discover

    items = discover(args.root)
    check_outputs_spare_inputs(items, args.out)
    started = time.perf_counter()
    results = segment_on_ray(items, args.out, args, overwrite=args.overwrite)
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


def segment_on_ray(items: list, out: Path, args: argparse.Namespace, overwrite: bool = False) -> list:
    """Segment ``items`` into ``out`` on the workers ``args`` asks for (``add_ray_arguments``), with
    the engine ``args`` describes (``add_engine_arguments``), showing one progress bar.

    Returns:
        One :class:`~swiftcuda.many.summary.VideoResult` per item, in order.

    Raises:
        InputError: Ray is missing, the cluster cannot be reached or lacks the GPUs asked for,
            ``out`` holds something else, or --compile comes with several videos per worker; the
            workers' model-loading errors.
    """
    from tqdm import tqdm

    from swiftcuda.many.driver import ManyRun, cluster_plan, ray_session, require_ray
    from swiftcuda.many.job import finished_result, prepare_output
    from swiftcuda.many.summary import write_summary

    require_ray()
    videos_per_worker = args.videos_per_worker
    if args.compile:
        if (videos_per_worker or 1) > 1:
            raise InputError("--compile steps one video at a time: leave out --videos-per-worker, or --compile")
        videos_per_worker = 1
    out = out.resolve()
    # Workers may run in another folder: every path they get is absolute.
    items = [dataclasses.replace(i, frames=i.frames.resolve(), mask=i.mask.resolve()) for i in items]
    engine_args = worker_options(args)
    prepare_output(out, overwrite)
    finished = [finished_result(out, item.name) for item in ([] if overwrite else items)]
    if finished and all(finished):  # nothing to do: no cluster to start
        write_summary(out, finished)
        return finished
    with ray_session(args.ray) as ray:
        plan = cluster_plan(ray, args.ray_workers, args.gpus_per_worker, args.device, videos_per_worker)
        many = ManyRun(items, out, engine_args, plan, overwrite=overwrite)
        many.start()
        with tqdm(total=len(items), unit="video", desc="segment-many", disable=None) as bar:
            tally = {"frames": 0, "failed": 0, "started": time.perf_counter()}

            def show(result) -> None:
                tally["frames"] += result.frames if result.status == "done" else 0
                tally["failed"] += result.status == "failed"
                elapsed = time.perf_counter() - tally["started"]
                bar.set_postfix(fps=f"{tally['frames'] / max(elapsed, 1e-9):.1f}", failed=tally["failed"], refresh=False)
                bar.update()

            return many.run(on_result=show)


def worker_options(args: argparse.Namespace) -> argparse.Namespace:
    """The options the workers get: the command's, less its callbacks, with the weights resolved
    here (the demo weights are announced once, by the driver) and their path made absolute."""
    from swiftcuda.cli._engine import engine_weights

    options = {key: value for key, value in vars(args).items() if not callable(value)}
    weights = engine_weights(args)
    options["weights"] = str(Path(weights).resolve()) if Path(weights).is_file() else weights
    return argparse.Namespace(**options)
