"""Videos per minute of ``segment-many`` with 1, 2, ... Ray workers on this machine, in one run.

    python benchmarks/bench_many.py                       # 8 generated videos, 1 and 2 workers, CPU
    python benchmarks/bench_many.py --workers 1,2,4 --videos 16 --frames 40 --size 854x480 --device cuda
    python benchmarks/bench_many.py --device cuda --workers 1 --videos-per-worker 1,4   # batching on a GPU

Generates a DAVIS-layout set (``swiftcuda make-testset``), starts one local Ray cluster, and for
each worker count segments every video into a fresh folder (after an untimed pass of one video
per worker, which measures the CPU convolution tuning once, as a user's first run does). Reported
per count: the workers' start (Ray actor, model load), the videos' time once started, videos per minute and frames per
second over both, and the speed-up over the first row. Each worker gets its share of the CPUs
(its PyTorch threads), as ``segment-many`` gives it. With several ``--videos-per-worker`` counts,
every worker count runs with each of them (the generated videos share one size, so a worker's
videos share every trunk pass).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from swiftcuda.cli._arguments import add_engine_arguments, engine_options, notify
from swiftcuda.cpu import describe
from swiftcuda.data import make_testset
from swiftcuda.many.driver import ManyRun, cluster_plan, require_ray, worker_engine_options
from swiftcuda.many.inputs import discover
from swiftcuda.many.job import prepare_output

SEQUENCES = (
    "bike-packing",
    "blackswan",
    "camel",
    "cows",
    "dog",
    "goat",
    "kite-surf",
    "libby",
    "parkour",
    "breakdance",
    "car-roundabout",
    "car-shadow",
    "dance-twirl",
    "drift-chicane",
    "horsejump-high",
    "scooter-black",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--videos", type=int, default=8, help=f"generated videos (at most {len(SEQUENCES)})")
    parser.add_argument("--frames", type=int, default=20, help="frames per video")
    parser.add_argument("--size", default="240x432", help="frame size HxW")
    parser.add_argument("--gpus-per-worker", type=float, default=None)
    parser.add_argument(
        "--videos-per-worker",
        default=None,
        help="videos each worker steps together, e.g. 1,4 (default: 4 on a GPU, 1 on a CPU)",
    )
    add_engine_arguments(parser)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    ray = require_ray()
    counts = [int(n) for n in args.workers.split(",")]
    batches = [int(n) for n in args.videos_per_worker.split(",")] if args.videos_per_worker else [None]
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-many-") as folder:
        root = Path(folder) / "davis"
        make_testset(
            root, sequences=list(SEQUENCES[: args.videos]), max_frames=args.frames, size=(height, width), seed=0
        )
        items = discover(root)
        engine = worker_engine_options(engine_options(args), notify)
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        try:
            rows = []
            for count, batch in [(count, batch) for count in counts for batch in batches]:
                plan = cluster_plan(ray, count, args.gpus_per_worker, args.device, batch)
                # Untimed: one video per stream, so that the CPU convolution tuning (per thread count,
                # cached on disk) is measured before, as it is for a user's second run.
                scratch = Path(folder) / f"warm-up-{count}-{plan.videos}"
                prepare_output(scratch, overwrite=False)
                warm_up = ManyRun(items[: count * plan.videos], scratch, engine, plan)
                warm_up.start()
                warm_up.run()
                warm_up.stop()
                out = Path(folder) / f"out-{count}-{plan.videos}"
                prepare_output(out, overwrite=False)
                started = time.perf_counter()
                run = ManyRun(items, out, engine, plan)
                run.start()
                ready = time.perf_counter()
                results = run.run()
                finished = time.perf_counter()
                run.stop()
                if any(r.status != "done" for r in results):
                    raise SystemExit(f"a video failed: {[r for r in results if r.status != 'done']}")
                frames = sum(r.frames for r in results)
                times = (ready - started, finished - ready, finished - started)
                rows.append((count, plan.videos, plan.threads, *times, frames))
        finally:
            ray.shutdown()
    print(describe())
    # Other processes on the machine change the picture: a worker of several threads waits at every
    # parallel region for a thread that is not running; one-thread workers do not.
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    print(
        f"{len(items)} videos x {args.frames} frames at {height}x{width}, device {args.device or 'auto'}, "
        f"precision {args.precision}, memory {args.memory}{', no tuning' if args.no_tune else ''}"
    )
    print(
        "| workers | videos each | threads each | start (s) | videos (s) | total (s) | videos/min | frames/s | speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = rows[0][5]
    for count, batch, threads, start, videos, total, frames in rows:
        print(
            f"| {count} | {batch} | {threads} | {start:.1f} | {videos:.1f} | {total:.1f} | "
            f"{len(items) * 60 / total:.1f} | {frames / total:.1f} | {base / total:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
