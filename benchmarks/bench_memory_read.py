"""Benchmark the memory read: every backend available on the device, the reference and SDPA.

At 480p sizes (one object, P = 1620 query pixels, Ck = 32, Cv = 128) over memory sizes N from
1.6k to 64k (GPU; 32k on the CPU), float32 and float16. Usage::

    python benchmarks/bench_memory_read.py                       # the GPU if there is one
    python benchmarks/bench_memory_read.py --device cpu --quick  # smoke run
    python benchmarks/bench_memory_read.py --markdown results.md --sizes 1620,16384,65536

FLOPs: 2 B P N (Ck + Cv) (the two matrix products; the exponentials are not counted). Bytes: the
memory keys and values, the query keys and values read once, the (B, 2Cv, P) output written once.
``sdpa`` is ``torch.nn.functional.scaled_dot_product_attention`` on (B, 1, len, C) tensors laid out
as it prefers (prepared outside the timing) and without the query-value concatenation: its most
favourable setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

from swiftcuda import ops  # noqa: E402

DIMS = {"B": 1, "Ck": 32, "Cv": 128, "P": 1620}


def build(case: h.Case, device: torch.device):
    s = case.sizes
    batch, key_dim, value_dim, entries, pixels = s["B"], s["Ck"], s["Cv"], s["N"], s["P"]
    gen = h.generator_for(device)
    element = torch.empty((), dtype=h.DTYPES[case.dtype]).element_size()
    flops = 2 * batch * pixels * entries * (key_dim + value_dim)
    if case.impl == "sdpa":
        q = h.random_tensor((batch, 1, pixels, key_dim), case.dtype, device, gen)
        k = h.random_tensor((batch, 1, entries, key_dim), case.dtype, device, gen)
        v = h.random_tensor((batch, 1, entries, value_dim), case.dtype, device, gen)
        moved = element * batch * (entries * (key_dim + value_dim) + pixels * (key_dim + value_dim))
        return (lambda: F.scaled_dot_product_attention(q, k, v)), moved, flops
    mem_key = h.random_tensor((batch, key_dim, entries), case.dtype, device, gen)
    mem_val = h.random_tensor((batch, value_dim, entries), case.dtype, device, gen)
    q_key = h.random_tensor((batch, key_dim, pixels), case.dtype, device, gen)
    q_val = h.random_tensor((batch, value_dim, pixels), case.dtype, device, gen)
    out = torch.empty((batch, 2 * value_dim, pixels), dtype=h.DTYPES[case.dtype], device=device)
    moved = (
        element * batch * (entries * (key_dim + value_dim) + pixels * (key_dim + value_dim) + pixels * 2 * value_dim)
    )
    return (lambda: ops.memory_read(mem_key, mem_val, q_key, q_val, out=out, backend=case.impl)), moved, flops


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
    impls = h.implementations(ops.available_backends(device.type), device) + ["sdpa"]
    cases = [
        h.Case("memory_read", impl, dtype, {**DIMS, "N": n})
        for dtype in h.dtypes_from(args)
        for n in sizes
        for impl in impls
    ]
    results = h.run_cases(cases, build, device, args, Path(__file__).resolve())
    h.report(
        "memory_read",
        results,
        device,
        ["B", "Ck", "Cv", "P", "N"],
        "both",
        [
            "FLOPs 2·B·P·N·(Ck+Cv); bytes: inputs read once, output written once.",
            "sdpa: scaled_dot_product_attention in its preferred (B, 1, len, C) layout, without the concat.",
        ],
        args.markdown,
    )


if __name__ == "__main__":
    main()
