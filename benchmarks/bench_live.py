"""Live input against the engine's own pace: a video file played at its frame rate through
``swiftcuda.live.run_live``, beside the step time of the same engine stepping every frame.

    python benchmarks/bench_live.py --device cpu --sizes 135,270 --seconds 10
    python benchmarks/bench_live.py --device cuda --markdown benchmarks/RESULTS.md

Per size: the batch step time (median over the steps after warm-up, stepping every frame, labels
on the host), then the live run: frames received, processed and dropped, the processed rate, and
capture-to-mask latency p50 / p95 / max. The ratios say what the design promises: processed FPS
near the engine's FPS (writing a PNG per mask costs a little), and latency between one and two
step times (a frame waits at most one step for the engine, then its own step).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _harness import environment

from swiftcuda import Segmenter, load_model
from swiftcuda.data.testset import bundled_masks_root, load_mask_sequence, render_video
from swiftcuda.demo import DEMO_SEQUENCE
from swiftcuda.live import open_live_source, run_live, warm_up

BATCH_STEPS = 20


def test_video(side: int, frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) RGB frames and (H, W) first labels: the demo's mask sequence, played forwards
    and backwards until ``frames`` long, rendered with generated textures; ``side`` is the shorter side."""
    labels = load_mask_sequence(bundled_masks_root() / DEMO_SEQUENCE, size=side)
    there_and_back = np.concatenate([labels, labels[-2:0:-1]])
    height, width = labels.shape[1] // 2 * 2, labels.shape[2] // 2 * 2  # video codecs want even sizes
    labels = np.resize(there_and_back[:, :height, :width], (frames, height, width))
    return render_video(labels, seed), labels[0]


def step_seconds(segmenter: Segmenter, frames: np.ndarray, first_mask: np.ndarray) -> float:
    """Median seconds of a steady-state step, labels copied to the host as the live loop does."""
    warm_up(segmenter, first_mask)
    times = []
    for index, frame in enumerate(frames[:BATCH_STEPS]):
        started = time.perf_counter()
        probs = segmenter.step(frame, mask=first_mask if index == 0 else None)
        segmenter.to_labels(probs).to(torch.uint8).cpu()
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", default="demo", help="checkpoint, or demo")
    parser.add_argument("--sizes", default="135,270", help="comma-separated frame heights (the shorter side)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the played video")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the played video")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this markdown file")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = load_model(args.weights, device=device)
    rows = []
    for side in (int(size) for size in args.sizes.split(",")):
        frames, first_mask = test_video(side, int(args.fps * args.seconds))
        step = step_seconds(Segmenter(model), frames, first_mask)
        with tempfile.TemporaryDirectory() as folder:
            video = Path(folder) / "played.avi"
            writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), args.fps, frames.shape[2:0:-1])
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
            (Path(folder) / "masks").mkdir()
            report = run_live(open_live_source(str(video)), Segmenter(model), first_mask, Path(folder) / "masks")
        latency = report.latency
        rows.append(
            f"| {frames.shape[1]}x{frames.shape[2]} | {1 / step:.1f} | {report.received} | {report.processed} | "
            f"{report.dropped} | {report.processed / report.seconds:.1f} | {latency.percentile(50) * 1e3:.0f} | "
            f"{latency.percentile(95) * 1e3:.0f} | {latency.max * 1e3:.0f} | "
            f"{report.processed / report.seconds * step:.2f} | {latency.percentile(50) / step:.2f} | "
            f"{latency.percentile(95) / step:.2f} |"
        )
    env = environment(device)
    text = "\n".join(
        [
            f"### Live input (`python benchmarks/bench_live.py --device {args.device} --sizes {args.sizes} "
            f"--seconds {args.seconds:g}`), {args.weights} weights, a {args.fps:g} FPS video file",
            "",
            ", ".join(f"{k}: {v}" for k, v in env.items()),
            "",
            "| size | engine FPS | received | processed | dropped | processed FPS | latency p50 ms | p95 ms | max ms "
            "| processed / engine FPS | p50 / step | p95 / step |",
            "|" + "---|" * 12,
            *rows,
            "",
        ]
    )
    print(text)
    if args.markdown is not None:
        with args.markdown.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
