"""J&F and frames per second of one set of weights at several internal sizes, in one run.

Videos: the sequences held out of the demo weights' training (swiftcuda/assets/demo_r18.md),
generated at 480p with ``make-testset`` (``--seed``; the demo weights' size was chosen on seed 100,
so report on another), or any DAVIS-layout folder (``--davis``). Every size segments every video;
the sizes take turns frame by frame, so a busy shared machine slows them alike and the FPS ratios
hold. Masks are scored at the videos' full resolution (the engine scales its probabilities back).

    python benchmarks/bench_internal_size.py --sizes 240,360,none --seed 7 [--markdown RESULTS.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from swiftcuda.bench.fps import environment, publish
from swiftcuda.data import DavisDataset, make_testset
from swiftcuda.inference import Segmenter
from swiftcuda.inference.rescale import InternalSize, parse_internal_size
from swiftcuda.io.frames import read_image
from swiftcuda.io.masks import write_mask
from swiftcuda.metrics import evaluate
from swiftcuda.precision import dtype_name
from swiftcuda.weights import load_model

HELD_OUT = ("dog", "horsejump-high", "kite-surf", "scooter-black", "libby")


def size_name(size: InternalSize) -> str:
    if size is None:
        return "none (480, the frames')"
    return str(size) if isinstance(size, int) else "x".join(map(str, size))


def segment_interleaved(
    model, dataset: DavisDataset, names: list[str], sizes: list[InternalSize], out: Path, warmup: int
) -> list[float]:
    """Segment every sequence at every size, the sizes taking turns frame by frame; write the masks
    to ``out/<size index>/<sequence>/``. Returns each size's seconds of model time (frames after
    ``warmup`` of each sequence, labels on the host included)."""
    seconds = [0.0] * len(sizes)
    for name in names:
        sequence = dataset.sequence(name)
        segmenters = [Segmenter(model, internal_size=size) for size in sizes]
        for index, path in enumerate(sequence.image_paths):
            image = read_image(path)
            mask = sequence.first_mask() if index == 0 else None
            for which, segmenter in enumerate(segmenters):
                started = time.perf_counter()
                labels = segmenter.to_labels(segmenter.step(image, mask=mask)).cpu().numpy().astype(np.uint8)
                if index > warmup:
                    seconds[which] += time.perf_counter() - started
                folder = out / str(which) / name
                folder.mkdir(parents=True, exist_ok=True)
                write_mask(folder / f"{path.stem}.png", labels)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="240,360,none", help="internal sizes: S, HxW or none, comma-separated")
    parser.add_argument("--weights", default="demo", help="checkpoint (default: the demo weights)")
    parser.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16")
    parser.add_argument(
        "--davis", type=Path, default=None, help="a DAVIS-layout folder (default: generate the held-out set)"
    )
    parser.add_argument("--seed", type=int, default=7, help="appearance seed of the generated held-out set")
    parser.add_argument("--frames", type=int, default=30, help="frames per generated video")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames at the start of each video")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args(argv)
    sizes = [parse_internal_size(text) for text in args.sizes.split(",")]
    model = load_model(args.weights, dtype=args.precision)
    with tempfile.TemporaryDirectory(prefix="swiftcuda-internal-size-") as work:
        work = Path(work)
        if args.davis is None:
            make_testset(work / "videos", sequences=list(HELD_OUT), seed=args.seed, max_frames=args.frames)
            root, source = work / "videos", f"held-out sequences {', '.join(HELD_OUT)}, make-testset --seed {args.seed}"
        else:
            root, source = args.davis, str(args.davis)
        dataset = DavisDataset(root, "val")
        names = dataset.sequences
        seconds = segment_interleaved(model, dataset, names, sizes, work / "masks", args.warmup)
        frames = sum(max(len(dataset.sequence(n).image_paths) - 1 - args.warmup, 0) for n in names)
        rows = []
        for which, size in enumerate(sizes):
            summary = evaluate(dataset.annotations_root, work / "masks" / str(which), names, workers=1).summary()
            row = summary.global_row()
            rows.append((size, row["J&F-Mean"], row["J-Mean"], row["F-Mean"], frames / seconds[which]))
    baseline_fps = next((fps for size, *_, fps in rows if size is None), rows[-1][-1])
    heading = (
        f"### Internal size: J&F and CPU/GPU frames per second, {args.weights} weights\n\n"
        f"{environment(torch.device('cpu'))}; {dtype_name(next(model.parameters()).dtype)}; {source}, "
        f"{len(names)} videos; scored at the frames' size; FPS of model time (labels included), the sizes "
        f"taking turns frame by frame.\n\n"
        "| internal size | J&F | J | F | FPS | vs none |\n| --- | --- | --- | --- | --- | --- |\n"
    )
    table = "".join(
        f"| {size_name(size)} | {jf:.3f} | {j:.3f} | {f:.3f} | {fps:.2f} | {fps / baseline_fps:.2f}x |\n"
        for size, jf, j, f, fps in rows
    )
    publish(heading + table, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
