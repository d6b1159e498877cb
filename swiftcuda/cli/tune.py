"""``swiftcuda tune``: measure every convolution's algorithms on this CPU ahead of time and print the table."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from swiftcuda.cli._arguments import positive_int
from swiftcuda.errors import InputError
from swiftcuda.optimize.conv_tuning import FIXED, STRATEGIES

HELP = "choose each CPU convolution's fastest algorithm for a frame size ahead of time, and print the table"


def register(subparsers: argparse._SubParsersAction) -> None:
    from swiftcuda.cli._arguments import parse_size
    from swiftcuda.precision import PRECISIONS

    parser = subparsers.add_parser(
        "tune",
        help=HELP,
        description=(
            "Run the engine once on a generated video of the given size so that every convolution "
            "measures its candidate algorithms (oneDNN channels-last, oneDNN NCHW, Winograd) on this "
            "CPU, record the fastest in the tuning cache (per CPU model and torch version, under "
            "$XDG_CACHE_HOME/swiftcuda), and print one row per convolution. Later runs of "
            "`swiftcuda segment` at that size start without measuring."
        ),
    )
    parser.add_argument("--variant", choices=("r18", "r50"), default="r18", help="backbone")
    parser.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="model precision to tune (auto: bf16 on a CPU with native bfloat16, else fp32)",
    )
    parser.add_argument(
        "--size", type=parse_size, default=(480, 854), metavar="HxW", help="frame size (default 480x854)"
    )
    parser.add_argument("--objects", type=positive_int, default=1, help="objects in the video (default 1)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--fresh", action="store_true", help="measure again even where the cache has a choice")
    parser.add_argument("--direct-convolutions", action="store_true", help="leave the Winograd kernels out")
    parser.set_defaults(run=run)


def _video(height: int, width: int, objects: int, frames: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    """Noise frames and a first mask of ``objects`` horizontal bands: the shapes are what matter."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]
    mask = np.zeros((height, width), np.uint8)
    for k in range(objects):
        mask[k * height // objects : (2 * k + 1) * height // (2 * objects), width // 4 : 3 * width // 4] = k + 1
    return images, mask


def format_rows(seen: list, fresh_keys: set[str], strategy: str, totals: dict[str, float]) -> str:
    """One row per convolution input: per strategy, its algorithm and milliseconds (layout changes
    included); then the totals, which decide the model's strategy."""
    lines = [
        f"model strategy: {strategy} (sum of the per-layer times: "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in totals.items())
        + ")",
        "",
        "| layer | convolution and input | fixed rule | channels_last model | nchw model | runs | source |",
        "|---|---|---|---|---|---|---|",
    ]
    listed: set[tuple[str, str]] = set()
    for layer, key, choice in seen:
        if (layer, key) in listed:
            continue
        listed.add((layer, key))
        cells = [f"{choice.algorithm(name)} {choice.best_ms(name):.2f} ms" for name in STRATEGIES]
        source = "measured now" if key in fresh_keys else "cache"
        lines.append(f"| {layer} | {key} | {' | '.join(cells)} | {choice.algorithm(strategy)} | {source} |")
    lines.append("")
    lines.append(
        f"convolutions of one step: {totals[strategy]:.1f} ms as chosen, {totals[FIXED]:.1f} ms with the fixed rule "
        f"(the untuned engine): {totals[FIXED] / max(totals[strategy], 1e-9):.2f}x"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from swiftcuda.cpu import describe
    from swiftcuda.inference import Segmenter
    from swiftcuda.model import SwiftNet
    from swiftcuda.model.init import lively_random_init
    from swiftcuda.optimize import PrepareOptions, prepare
    from swiftcuda.optimize.conv_tuning import TunedConv2d, TuningCache, default_cache_path
    from swiftcuda.optimize.fused_conv import FusedConv
    from swiftcuda.precision import dtype_name, resolve_precision

    height, width = args.size
    if height < 32 or width < 32:
        raise InputError(f"frame size {height}x{width} is too small: give at least 32x32 with --size HxW")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = resolve_precision(args.precision, "cpu")
    model = lively_random_init(SwiftNet(args.variant), seed=0).eval().to(dtype)
    stored = TuningCache()
    cache = TuningCache(default_cache_path(), persist=False) if args.fresh else stored
    if args.fresh:
        cache.choices = {}
    before = set(cache.choices)
    winograd = False if args.direct_convolutions else None
    prepared = prepare(model, PrepareOptions(winograd=winograd, tune=True), tuning_cache=cache)
    segmenter = Segmenter(prepared)
    images, mask = _video(height, width, args.objects)
    with torch.inference_mode():
        segmenter.step(images[0], mask=mask)
        for image in images[1:]:
            segmenter.step(image)
    if args.fresh:
        stored.choices.update(cache.choices)
        stored.save()
    tuner = next(m.tuner for m in prepared.modules() if isinstance(m, TunedConv2d))
    fresh_keys = set(cache.choices) - before
    print(
        f"### Convolution algorithms, SwiftNet-{args.variant.upper()}, {dtype_name(dtype)}, "
        f"{height}x{width}, {args.objects} object(s)\n\n{describe()}; torch {torch.__version__}\n"
    )
    print(format_rows(tuner.seen, fresh_keys, tuner.best_strategy(), tuner.totals()))
    fused = sum(isinstance(module, FusedConv) for module in prepared.modules())
    if fused:
        # Without this line a 16-bit table looks as if most of the model had gone missing.
        print(
            f"\n{fused} more convolutions run with their ReLU and residual add fused into one oneDNN call "
            "(16-bit CPU models; oneDNN picks their layout), so they are not tuned and not in the totals: "
            "benchmarks/bench_pointwise_fusion.py measures them"
        )
    print(f"\ncache: {stored.path} ({len(fresh_keys)} measured now, {len(stored.choices)} recorded)")
    return 0
