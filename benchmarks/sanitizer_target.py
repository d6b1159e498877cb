"""A small run of every compiled op, for compute-sanitizer (memcheck, racecheck, synccheck).

``scripts/gpu_suite.sh`` runs ``compute-sanitizer --tool T python benchmarks/sanitizer_target.py
--device cuda``: each op of the extension's "cuda" backend (or "cpu" with ``--device cpu``, which
the suite's dry run uses to prove the script runs) once per dtype at ragged sizes (pixels and
memory lengths not multiples of the kernels' tiles, per-item valid lengths, a one-entry memory),
each result compared with the plain PyTorch reference, so that a sanitizer finding and a wrong
answer both fail the run. Sizes are small: the sanitizers slow kernels down by 10-100x.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swiftcuda import ops  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


def _close(name: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    error = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    scale = max(want.double().abs().max().item(), 1.0) if want.numel() else 1.0
    if not error <= TOLERANCE[dtype] * scale:  # also catches NaN
        raise SystemExit(f"sanitizer_target: {name} differs from the reference by {error:.3g}")


def run(device: torch.device, backend: str, dtypes: list[torch.dtype]) -> None:
    """Every op once per dtype on ``device`` with ``backend``, checked against the reference."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    for dtype in dtypes:
        batch, key_dim, value_dim, pixels, capacity = 2, 32, 64, 333, 150
        for length in (1, 97):  # a one-entry memory, and a ragged one
            mem_key, mem_val = rand(batch, key_dim, length, dtype=dtype), rand(batch, value_dim, length, dtype=dtype)
            q_key, q_val = rand(batch, key_dim, pixels, dtype=dtype), rand(batch, value_dim, pixels, dtype=dtype)
            got = ops.memory_read(mem_key, mem_val, q_key, q_val, backend=backend)
            want = ops.memory_read(mem_key, mem_val, q_key, q_val, backend="reference")
            _close(f"memory_read {dtype} N={length}", got, want, dtype)
        key_buf = rand(batch, key_dim, capacity, dtype=dtype)
        val_buf = rand(batch, value_dim, capacity, dtype=dtype)
        n_valid = torch.tensor([37, 101], device=device, dtype=torch.int32)
        got = ops.memory_read(key_buf, val_buf, q_key, q_val, n_valid=n_valid, backend=backend)
        want = ops.memory_read(key_buf, val_buf, q_key, q_val, n_valid=n_valid, backend="reference")
        _close(f"memory_read {dtype} n_valid", got, want, dtype)

        new_key, new_val = rand(batch, key_dim, pixels, dtype=dtype), rand(batch, value_dim, pixels, dtype=dtype)
        got_k, got_v = ops.memory_update(mem_key, mem_val, new_key, new_val, backend=backend)
        want_k, want_v = ops.memory_update(mem_key, mem_val, new_key, new_val, backend="reference")
        _close(f"memory_update {dtype} keys", got_k, want_k, dtype)
        _close(f"memory_update {dtype} values", got_v, want_v, dtype)

        bufs = [key_buf.clone(), val_buf.clone(), n_valid.clone()]
        ops.memory_update_(*bufs, new_key, new_val, backend=backend)
        want_bufs = [key_buf.clone(), val_buf.clone(), n_valid.clone()]
        ops.memory_update_(*want_bufs, new_key, new_val, backend="reference")
        for name, got_t, want_t in zip(("keys", "values", "n_valid"), bufs, want_bufs):
            _close(f"memory_update_ {dtype} {name}", got_t, want_t, dtype)

        probs = torch.rand(3, 48, 80, generator=g).to(device=device, dtype=dtype)
        for got_t, want_t in zip(ops.rsp(probs, backend=backend), ops.rsp(probs, backend="reference")):
            _close(f"rsp {dtype}", got_t, want_t, dtype)
        got = ops.soft_aggregate(probs, backend=backend)
        _close(f"soft_aggregate {dtype}", got, ops.soft_aggregate(probs, backend="reference"), dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--dtypes", default="fp32,fp16,bf16")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    backend = "cuda" if device.type == "cuda" else "cpu"
    run(device, backend, [DTYPES[name] for name in args.dtypes.split(",")])
    print(f"sanitizer_target: every {backend} op matched the reference ({args.dtypes})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
