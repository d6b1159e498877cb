"""Benchmark the CPU 3x3 convolutions: oneDNN direct against the extension's Winograd ``conv3x3``.

At the shapes of SwiftNet-R18's 3x3, stride-1 convolutions for a 480 x 864 frame (the trunk's
residual blocks, the LAE, the key/value heads and the decoder), float32:

- ``reference``: ``F.conv2d`` on contiguous (NCHW) tensors, oneDNN's direct convolution;
- ``onednn-cl``: the same in channels-last, the engine's layout without Winograd;
- ``winograd``: ``torch.ops.swiftcuda.conv3x3`` (NNPACK's F(6x6, 3x3) kernels split over the
  OpenMP threads), from an NCHW input as the engine feeds it.

Usage::

    python benchmarks/bench_conv3x3.py --markdown benchmarks/RESULTS.md

FLOPs are those of the direct convolution (2 B K C 9 H W) for every row, so TFLOP/s compare the
work done per second; bytes: input, weights and output once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

from swiftcuda.ops import extension  # noqa: E402

#: (B, C, K, H, W) of SwiftNet-R18's 3x3 stride-1 convolutions at 480 x 864 (B = 3: the decoder's
#: per-object layers with three objects).
SHAPES = [
    (1, 64, 64, 120, 216),
    (3, 64, 64, 120, 216),
    (1, 128, 128, 60, 108),
    (1, 64, 64, 60, 108),
    (1, 256, 256, 30, 54),
    (1, 512, 256, 30, 54),
    (1, 256, 128, 30, 54),
    (1, 256, 32, 30, 54),
]
QUICK_SHAPES = SHAPES[:1] + SHAPES[4:5]


def build(case: h.Case, device: torch.device):
    s = case.sizes
    batch, cin, cout, height, width = s["B"], s["C"], s["K"], s["H"], s["W"]
    gen = h.generator_for(device)
    x = h.random_tensor((batch, cin, height, width), case.dtype, device, gen)
    weight = h.random_tensor((cout, cin, 3, 3), case.dtype, device, gen, scale=(9 * cin) ** -0.5)
    bias = h.random_tensor((cout,), case.dtype, device, gen)
    moved = x.element_size() * (x.numel() + weight.numel() + batch * cout * height * width)
    flops = 2 * batch * cout * cin * 9 * height * width
    if case.impl == "winograd":
        extension.status()  # loads the extension (also in the memory-measuring subprocess)
        return (lambda: torch.ops.swiftcuda.conv3x3(x, weight, bias)), moved, flops
    if case.impl == "onednn-cl":
        x_cl = x.contiguous(memory_format=torch.channels_last)
        weight_cl = weight.contiguous(memory_format=torch.channels_last)
        return (lambda: F.conv2d(x_cl, weight_cl, bias, padding=1)), moved, flops
    return (lambda: F.conv2d(x, weight, bias, padding=1)), moved, flops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_arguments(parser)
    parser.set_defaults(device="cpu", dtypes="fp32")
    args = parser.parse_args(argv)
    if args.memory_case:
        h.measure_memory_case_here(args.memory_case, build)
        return
    device = torch.device(args.device)
    if device.type != "cpu":
        raise SystemExit("conv3x3 is a CPU op: run with --device cpu")
    impls = ["reference", "onednn-cl"] + (["winograd"] if extension.status().winograd else [])
    shapes = QUICK_SHAPES if args.quick else SHAPES
    cases = [h.Case("conv3x3", impl, "fp32", dict(zip("BCKHW", shape))) for shape in shapes for impl in impls]
    results = h.run_cases(cases, build, device, args, Path(__file__).resolve())
    h.report(
        "conv3x3 (float32, stride 1, padding 1)",
        results,
        device,
        ["B", "C", "K", "H", "W"],
        "tflops",
        [
            "reference: oneDNN direct, NCHW; onednn-cl: oneDNN direct, channels-last; winograd: swiftcuda.conv3x3.",
            "FLOPs of the direct convolution for every row.",
        ],
        args.markdown,
    )


if __name__ == "__main__":
    main()
