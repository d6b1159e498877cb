"""Runs emulated kernels from an AddressSanitizer build; started by the tests in a subprocess whose
environment preloads libasan (harness.asan_environment()). Exits 0 when every check passes; an
ASan report exits with ASAN_OPTIONS' exitcode (23).

Usage: python -m tests.cuda_emu.asan_child LIBRARY OP [OP ...]   (OP: read, update, rsp, aggregate, family)

Inputs and the shuffled thread schedule come from $SWIFTCUDA_TEST_SEED, which the parent test sets
to its own seed (tests/conftest.py), so a failure reruns identically.
"""

from __future__ import annotations

import os
import sys

import torch

from tests.cuda_emu import checks
from tests.cuda_emu.harness import EmulatedKernels


def main(library: str, ops: list[str]) -> None:
    seed = int(os.environ["SWIFTCUDA_TEST_SEED"])
    generator = torch.Generator().manual_seed(seed)
    emu = EmulatedKernels.load(library, schedule="shuffle", seed=seed)
    for op in ops:
        if op == "read":
            for dtype in (torch.float32, torch.float16):  # the SIMT kernel with splits, the mma kernel
                checks.check_memory_read(emu, generator, dtype, 2, 20, 24, 300, 70, [300, 77], 132)
        elif op == "update":
            checks.check_memory_update(emu, generator, torch.float16, 16, 8, 700, [300, 670], 131, 0.37, 132)
        elif op == "rsp":
            checks.check_rsp(emu, generator, torch.float32, 3, 32, 48, 16)
        elif op == "aggregate":
            checks.check_soft_aggregate(emu, generator, torch.float32, 3, 17, 23)
        elif op == "family":
            from tests.cuda_emu.test_memory_read_family import CASES, emu_runner
            from tests.ops.family_checks import check_family_read

            for name in ("topk-splits", "full-splits"):  # every family kernel, workspaces with splits
                shape, variant, top_k, with_q_val, multiprocessors, _ = CASES[name]
                check_family_read(
                    emu_runner(emu, multiprocessors),
                    shape,
                    torch.float32,
                    variant,
                    top_k,
                    generator,
                    with_q_val=not with_q_val,
                )
        else:
            raise SystemExit(f"unknown op {op!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
