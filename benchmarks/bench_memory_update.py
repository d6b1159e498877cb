"""Benchmark the in-place memory update (the engine's path): every backend available on the device.

At 480p sizes (one object, P = 1620 new pixels, Ck = 32, Cv = 128, beta = 0.1: 162 appended) over
memory sizes N from 1.6k to 64k (GPU; 32k on the CPU), float32 and float16. Each call compares the
new keys with N valid entries of a buffer of capacity N + 162 and appends; ``n_valid`` is reset
to N before every call (one tiny copy, included in the time). Usage::

    python benchmarks/bench_memory_update.py
    python benchmarks/bench_memory_update.py --device cpu --quick

FLOPs: 2 B P N Ck (the cosine dot products). Bytes: the N memory keys and the P new keys read, the
162 chosen columns of keys and values read and written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

from swiftcuda import ops  # noqa: E402

DIMS = {"B": 1, "Ck": 32, "Cv": 128, "P": 1620}
BETA = 0.1


def build(case: h.Case, device: torch.device):
    s = case.sizes
    batch, key_dim, value_dim, entries, pixels = s["B"], s["Ck"], s["Cv"], s["N"], s["P"]
    count = ops.novel_pixel_count(pixels, BETA)
    gen = h.generator_for(device)
    element = torch.empty((), dtype=h.DTYPES[case.dtype]).element_size()
    key_buf = h.random_tensor((batch, key_dim, entries + count), case.dtype, device, gen)
    val_buf = h.random_tensor((batch, value_dim, entries + count), case.dtype, device, gen)
    new_key = h.random_tensor((batch, key_dim, pixels), case.dtype, device, gen)
    new_val = h.random_tensor((batch, value_dim, pixels), case.dtype, device, gen)
    start = torch.full((batch,), entries, dtype=torch.int32, device=device)
    n_valid = start.clone()

    def call():
        n_valid.copy_(start)
        ops.memory_update_(key_buf, val_buf, n_valid, new_key, new_val, beta=BETA, backend=case.impl)

    moved = element * batch * ((entries + pixels) * key_dim + 2 * count * (key_dim + value_dim))
    flops = 2 * batch * pixels * entries * key_dim
    return call, moved, flops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_arguments(parser)
    parser.add_argument("--sizes", default=None, help="comma-separated memory sizes N")
    args = parser.parse_args(argv)
    if args.memory_case:
        h.measure_memory_case_here(args.memory_case, build)
        return
    device = torch.device(args.device)
    sizes = h.memory_sizes(args, device)
    impls = h.implementations(ops.available_backends(device.type), device)
    cases = [
        h.Case("memory_update_", impl, dtype, {**DIMS, "N": n})
        for dtype in h.dtypes_from(args)
        for n in sizes
        for impl in impls
    ]
    results = h.run_cases(cases, build, device, args, Path(__file__).resolve())
    h.report(
        "memory_update_ (in place, beta 0.1)",
        results,
        device,
        ["B", "Ck", "Cv", "P", "N"],
        "both",
        [
            "FLOPs 2·B·P·N·Ck; bytes: memory and new keys read, chosen columns read and written.",
            "n_valid is reset before each call (a (B,) copy, timed).",
        ],
        args.markdown,
    )


if __name__ == "__main__":
    main()
