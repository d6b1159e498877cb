"""CPU frames per second with and without the residual blocks' ReLUs and adds fused into their
oneDNN convolutions (swiftcuda/optimize/pointwise_fusion.py), in one run.

Both engines are tuned (the default) and step the same video, taking turns frame by frame, so a
busy shared machine slows them alike and the ratio holds. Labels of the fused engine are compared
with the plain one's.

    python benchmarks/bench_pointwise_fusion.py --size 480x864 --objects 1,2 [--markdown RESULTS.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from swiftcuda.bench.fps import agreement, benchmark_video, environment, load_bench_model, publish
from swiftcuda.cli._arguments import parse_size
from swiftcuda.engine import build_segmenter
from swiftcuda.optimize.fused_conv import pointwise_fusion_available
from swiftcuda.options import EngineOptions
from swiftcuda.precision import dtype_name, resolve_precision

VARIANTS = (("plain", False), ("fused", True))


def measure(model, objects: int, frames: int, size: tuple[int, int], warmup: int) -> dict[str, tuple[float, list]]:
    """Per variant: (frames per second from the median frame's model time, labels included; every
    frame's labels). The median, not the total: on a shared machine a neighbour's burst lands on
    whichever engine is running, and the median leaves such frames out."""
    video = benchmark_video(objects, frames, *size)
    engines = {
        name: build_segmenter(EngineOptions(winograd=False, tune=True, pointwise=flag, internal_size=None), model)
        for name, flag in VARIANTS
    }
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    labels: dict[str, list] = {name: [] for name in engines}
    with torch.inference_mode():
        for index, frame in enumerate(video.frames):
            # Which engine goes first alternates: the second of two engines stepping in turns was
            # measured up to 10% slower than the first, whichever it was.
            order = list(engines.items()) if index % 2 == 0 else list(engines.items())[::-1]
            for name, engine in order:
                started = time.perf_counter()
                out = engine.to_labels(engine.step(frame, mask=video.labels[0] if index == 0 else None))
                if index > warmup:
                    seconds[name].append(time.perf_counter() - started)
                labels[name].append(out.numpy())
    return {name: (1.0 / statistics.median(seconds[name]), labels[name]) for name in engines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="demo", help="checkpoint (default: the demo weights)")
    parser.add_argument("--precision", default="bf16", help="bf16 or fp16 (float32 models are not fused)")
    parser.add_argument("--size", type=parse_size, default=(480, 864), metavar="HxW")
    parser.add_argument("--objects", default="1,2", help="object counts, comma-separated")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=4, help="untimed frames (the tuner measures in the first)")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args(argv)
    model, weights = load_bench_model(args.weights)
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    if not pointwise_fusion_available(dtype):
        raise SystemExit(
            f"bench_pointwise_fusion: oneDNN cannot fuse {dtype_name(dtype)} convolutions on this CPU, "
            "so the engine never fuses there (auto precision is float32, which is not fused)"
        )
    model = model.to(dtype=dtype)
    rows = []
    for objects in (int(text) for text in args.objects.split(",")):
        result = measure(model, objects, args.frames, args.size, args.warmup)
        (plain_fps, plain_labels), (fused_fps, fused_labels) = result["plain"], result["fused"]
        rows.append(
            f"| {objects} | {plain_fps:.2f} | {fused_fps:.2f} | {fused_fps / plain_fps:.2f}x | "
            f"{100 * agreement(fused_labels, plain_labels):.2f}% |\n"
        )
    heading = (
        f"### Fused ReLUs and residual adds, CPU, {weights}\n\n"
        f"{environment(torch.device('cpu'))}; {dtype_name(next(model.parameters()).dtype)}; "
        f"{args.size[0]}x{args.size[1]}, {args.frames} frames, {args.warmup} untimed; both tuned; "
        "the two engines taking turns frame by frame, first one then the other; FPS of the median frame.\n\n"
        "| objects | plain FPS | fused FPS | fused vs plain | labels as plain |\n| --- | --- | --- | --- | --- |\n"
    )
    publish(heading + "".join(rows), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
