"""Benchmark reversed sub-pixel (RSP): every backend available on the device.

At 480p (854 x 480 padded to 864 x 480, factor 16) for 1, 3 and 8 objects, float32 and float16.
Usage::

    python benchmarks/bench_rsp.py
    python benchmarks/bench_rsp.py --device cpu --quick

Bytes: the (O, H, W) maps read once, the two (O, 256, H/16, W/16) outputs written once (the op is
memory bound; FLOPs are the O (O - 1) additions of the unions, not reported).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

from swiftcuda import ops  # noqa: E402

OBJECTS = [1, 3, 8]
QUICK_OBJECTS = [1, 3]
SIZE = {"H": 480, "W": 864, "factor": 16}


def build(case: h.Case, device: torch.device):
    s = case.sizes
    objects, height, width, factor = s["O"], s["H"], s["W"], s["factor"]
    gen = h.generator_for(device)
    probs = torch.rand(objects, height, width, generator=gen, device=device).to(h.DTYPES[case.dtype])
    element = probs.element_size()
    moved = element * 3 * objects * height * width
    flops = objects * max(objects - 1, 1) * height * width
    return (lambda: ops.rsp(probs, factor=factor, backend=case.impl)), moved, flops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_arguments(parser)
    parser.add_argument("--objects", default=None, help="comma-separated object counts")
    args = parser.parse_args(argv)
    if args.memory_case:
        h.measure_memory_case_here(args.memory_case, build)
        return
    device = torch.device(args.device)
    counts = QUICK_OBJECTS if args.quick else OBJECTS
    if args.objects:
        counts = [int(n) for n in args.objects.split(",")]
    impls = h.implementations(ops.available_backends(device.type), device)
    cases = [
        h.Case("rsp", impl, dtype, {**SIZE, "O": o}) for dtype in h.dtypes_from(args) for o in counts for impl in impls
    ]
    results = h.run_cases(cases, build, device, args, Path(__file__).resolve())
    h.report(
        "rsp (factor 16)",
        results,
        device,
        ["O", "H", "W"],
        "gbps",
        ["Bytes: the maps read once, both unshuffled outputs written once."],
        args.markdown,
    )


if __name__ == "__main__":
    main()
