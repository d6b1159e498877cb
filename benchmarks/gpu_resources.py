"""Compile every kernel for sm_80 (A100) and sm_90 (H100) on this machine (no GPU) and print one table.

Triton kernels: each launch the launchers make at SwiftNet's shapes (R18: key 32 / value 128, R50:
key 128 / value 512; 480x854 frames, 1620 memory pixels, the engine's memory layout; one object
and four; float32, float16, bfloat16; with the memory splits each GPU's multiprocessor count gives)
is recorded and compiled with the JIT's own specialization (ptxas runs), and the reads of the STM
family (XMem, Cutie, STCN at 480p: key 64, value 512 / 256, top-30 / top-20; ``--no-family`` skips
them), with automatic memory splits and with one split. CUDA kernels:
``kernels/cuda/*.cu`` with ``nvcc -cubin -Xptxas -v``. Columns: registers, spill store/load bytes,
stack, shared memory, resident blocks and warps per SM, tensor-core instructions in the SASS
(HGMMA / HMMA; MISSED when a 16-bit dot has none), local-memory and cp.async instruction counts.

Supported Triton: 3.6 (the oldest, what the GPU machines run with torch 2.11) to 3.8. Usage::

    python benchmarks/gpu_resources.py                      # both arches, table on stdout
    python benchmarks/gpu_resources.py --arch 90 --check    # exit 1 on a failed check
    python benchmarks/gpu_resources.py --markdown table.md --no-cuda

``--check`` fails on a compile failure, any spill in the memory read, combine and best-match
kernels, the family's read kernels and any CUDA kernel, fewer than 16 resident warps per SM for
the read and best-match kernels, and a 16-bit dot without tensor-core instructions. Results are cached by content hash in
``$SWIFTCUDA_GPU_CACHE`` (default ``~/.cache/swiftcuda/gpu_resources``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import gpu_resources as R  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, action="append", choices=R.ARCHES, help="repeatable; default both")
    parser.add_argument("--models", default=",".join(R.MODELS), help="comma list of R18,R50")
    parser.add_argument("--dtypes", default=",".join(R.DTYPES))
    parser.add_argument("--objects", default=",".join(map(str, R.OBJECTS)))
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA C++ kernels")
    parser.add_argument(
        "--no-family", action="store_true", help="skip the STM family's reads (XMem, Cutie, STCN shapes)"
    )
    parser.add_argument("--hot", action="store_true", help="only the memory read, merge and best-match kernels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--check", action="store_true", help="exit non-zero when a check fails")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    arches = args.arch or list(R.ARCHES)
    start = time.perf_counter()
    results = R.triton_resources(
        arches,
        workers=args.workers,
        kernels=R.HOT_KERNELS if args.hot else None,
        family=not args.no_family and not args.hot,
        models=args.models.split(","),
        dtypes=args.dtypes.split(","),
        objects=[int(o) for o in args.objects.split(",")],
    )
    if not args.no_cuda:
        for arch in arches:
            results += R.compile_cuda(arch)
    header = f"Triton {R.triton_version()} (oldest supported {R.OLDEST_TRITON}); {time.perf_counter() - start:.0f} s"
    print(header)
    print(R.format_table(results))
    if args.markdown:
        args.markdown.write_text(header + "\n\n" + R.format_table(results, markdown=True) + "\n")
    failed = [r for r in results if R.problems(r)]
    if failed:
        print(f"\n{len(failed)} of {len(results)} rows fail a check", file=sys.stderr)
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
