"""ONNX Runtime against the torch engine on this machine: frames per second of the exported step.

Both run the same generated video (real object motion from a bundled DAVIS mask sequence) with
the same weights, in one process, one after the other, so the ratio is measured under the same
conditions. Each row times the loop a user runs (step, then labels on the host), after warm-up
frames, and reports the share of pixels labelled as the torch float32 engine labels them.

    python benchmarks/bench_onnx.py --size 480x864 --objects 1 --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from swiftcuda.bench.fps import (
    Config,
    Measurement,
    _time_loop,
    agreement,
    benchmark_video,
    environment,
    load_bench_model,
    run_swiftcuda,
)
from swiftcuda.cli._arguments import parse_size
from swiftcuda.onnx import OnnxSegmenter, export_onnx

CPU = torch.device("cpu")


def run_onnx(folder: Path, video, warmup: int, threads: int | None) -> tuple[Measurement, list[str]]:
    """The exported step on ONNX Runtime (the providers OnnxSegmenter picks) over ``video``."""
    segmenter = OnnxSegmenter(folder, threads=threads, internal_size=None)

    def step(t: int) -> torch.Tensor:
        return segmenter.to_labels(segmenter.step(video.frames[t]))

    segmenter.step(video.frames[0], mask=video.labels[0])
    fps, labels = _time_loop(step, video, warmup, CPU)
    return Measurement(Config("onnx"), int(video.labels[0].max()), fps, None, labels), segmenter.providers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_onnx", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(480, 864), metavar="HxW", help="frame size")
    parser.add_argument("--frames", type=int, default=15, help="frames per run, the first given")
    parser.add_argument("--warmup", type=int, default=3, help="frames not timed after the first")
    parser.add_argument("--objects", type=int, default=1, help="objects in the video (1 to 3)")
    parser.add_argument("--weights", default="demo", help="checkpoint, 'demo' or 'random'")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of both runtimes (default: all)")
    parser.add_argument("--export", type=Path, default=None, help="an existing export folder (default: export now)")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = args.size
    model, weights_note = load_bench_model(args.weights)
    video = benchmark_video(args.objects, args.frames, height, width)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.export
        export_seconds = None
        if folder is None:
            started = time.perf_counter()
            folder = export_onnx(model, Path(scratch) / "export").parent
            export_seconds = time.perf_counter() - started
        onnx_row, providers = run_onnx(folder, video, args.warmup, args.threads)
    torch_rows = [
        run_swiftcuda(model, Config("swiftcuda", precision), video, CPU, args.warmup, internal_size=None)
        for precision in ("fp32", "auto")
    ]
    reference = torch_rows[0]
    lines = [
        f"### ONNX Runtime against the torch engine, {height}x{width}, {args.objects} object(s), {weights_note}",
        "",
        environment(CPU) + f"; onnxruntime providers {', '.join(providers)}",
        "",
        "| runtime | FPS | ms / frame | vs torch fp32 | same labels as torch fp32 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, row in [(r.config.label, r) for r in torch_rows] + [("ONNX Runtime, fp32 export (4 graphs)", onnx_row)]:
        same = agreement(row.labels, reference.labels)
        lines.append(
            f"| {label} | {row.fps:.2f} | {1000 / row.fps:.0f} | {row.fps / reference.fps:.2f}x | {100 * same:.2f}% |"
        )
    command = "python benchmarks/bench_onnx.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines += ["", f"Command: `{command.strip()}`; {args.frames} frames, {args.warmup} warm-up frames untimed."]
    if export_seconds is not None:
        lines.append(f"The export itself (once per weights): {export_seconds:.0f} s.")
    table = "\n".join(lines)
    print(table)
    if args.markdown is not None:
        with args.markdown.open("a") as out:
            out.write("\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
