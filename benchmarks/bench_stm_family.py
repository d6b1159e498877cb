"""Benchmark the STM family's memory reads on the CPU: each model's own PyTorch read against swiftcuda's.

At each model's 480p shapes (P = 1620 query pixels at 1/16 resolution, key channels Ck = 64):

- XMem: Cv 512, top-k 30, selection and shrinkage, usage; N from 10k (working memory) to 26k
  (with long-term memory), 1 and 5 objects.
- Cutie: Cv 256, top-k 30, selection and shrinkage, usage; N up to 8,100, 1 and 3 objects.
- STCN: Cv 512, top-k 20, the l2 affinity without selection or shrinkage; N growing by a frame
  (1620 entries) every memory frame, 1 and 3 objects.

The keys are shared by the objects of a group, the values are per object: both reads compute the
affinity once and read every object's values, ``(1, O * Cv, N)``. The models' read
(:func:`family_read_torch`, restated here in our words from the papers' equations, not their code)
builds the (N, P) similarity, takes ``torch.topk`` over the memory axis, turns the k best into
softmax weights scattered into the zeroed similarity, and multiplies the values by it (and sums it
over the queries for the usage). swiftcuda's read is ``swiftcuda.ops.memory_read`` with
``affinity="l2"``, ``top_k``, and ``return_usage`` on the C++ CPU backend, which never builds the
(N, P) matrix. Usage::

    python benchmarks/bench_stm_family.py                 # every case, float32
    python benchmarks/bench_stm_family.py --quick         # smoke run: small N
    python benchmarks/bench_stm_family.py --markdown benchmarks/RESULTS.md

Peak memory is measured in a fresh subprocess per case with glibc's mmap threshold fixed at
64 KiB (``MALLOC_MMAP_THRESHOLD_``): every allocation above it is mapped on allocation and
unmapped on release, so the resident set follows the live large buffers exactly. The case runs
once untimed (one-off costs such as thread pools and library set-up), the resident-set high-water
mark is reset, and the peak resident memory during one more call minus the resident memory before
it is reported: temporaries and outputs, inputs excluded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

from swiftcuda import ops  # noqa: E402

PIXELS, KEY_DIM = 1620, 64
#: model -> (value channels, top-k, selection and shrinkage, usage, memory sizes, object counts)
MODELS = {
    "xmem": (512, 30, True, True, [10000, 26000], [1, 5]),
    "cutie": (256, 30, True, True, [8100], [1, 3]),
    "stcn": (512, 20, False, False, [3240, 8100, 16200], [1, 3]),
}
QUICK_SIZES = [2000]
IMPLS = ("model", "swiftcuda")


def family_read_torch(mem_key, mem_val, q_key, selection, shrinkage, top_k: int, usage: bool):
    """The models' read as plain PyTorch: the full (1, N, P) similarity, top-k, scatter, product.

    Similarity: the negative squared distance between each memory key and query key, each channel
    weighted by the query's selection ``qe``, ``-sum_c qe (mk - qk)^2``, expanded as
    ``2 mk^T (qk qe) - (mk^2)^T qe - sum_c qe qk^2``, times the entry's shrinkage, over sqrt(Ck);
    without selection ``2 mk^T qk - |mk|^2`` over sqrt(Ck). The top-k of each query's column are
    exponentiated and normalised in place of the similarity, which is zeroed first.
    """
    key_dim = mem_key.shape[1]
    keys_t = mem_key.transpose(1, 2)
    if selection is not None:
        similarity = 2 * torch.bmm(keys_t, q_key * selection)
        similarity -= torch.bmm((mem_key * mem_key).transpose(1, 2), selection)
        similarity -= (selection * q_key * q_key).sum(dim=1, keepdim=True)
    else:
        similarity = 2 * torch.bmm(keys_t, q_key)
        similarity -= (mem_key * mem_key).sum(dim=1).unsqueeze(2)
    if shrinkage is not None:
        similarity *= shrinkage.unsqueeze(2)
    similarity /= math.sqrt(key_dim)
    best, chosen = torch.topk(similarity, k=top_k, dim=1)
    best = torch.softmax(best, dim=1)
    affinity = similarity.zero_().scatter_(1, chosen, best)
    readout = torch.bmm(mem_val, affinity)
    return (readout, affinity.sum(dim=2)) if usage else readout


def same_readout(readout: torch.Tensor, model_readout: torch.Tensor) -> float:
    """The share of query pixels whose (1, C, P) readout agrees with the model's within 1e-3 of its
    largest |value|."""
    tolerance = 1e-3 * model_readout.abs().max().item()
    agrees = ((readout.float() - model_readout.float()).abs() <= tolerance).all(dim=1)
    return agrees.float().mean().item()


def build(case: h.Case, device: torch.device):
    """The call to time for one case (its inputs drawn here, outside the timing)."""
    s = case.sizes
    value_dim, top_k, selective, usage, _, _ = MODELS[s["model"]]
    entries, objects = s["N"], s["O"]
    gen = h.generator_for(device)
    mem_key = h.random_tensor((1, KEY_DIM, entries), case.dtype, device, gen)
    mem_val = h.random_tensor((1, objects * value_dim, entries), case.dtype, device, gen)
    q_key = h.random_tensor((1, KEY_DIM, PIXELS), case.dtype, device, gen)
    selection = shrinkage = None
    if selective:
        selection = torch.rand((1, KEY_DIM, PIXELS), generator=gen, device=device).to(h.DTYPES[case.dtype])
        shrinkage = (1 + torch.rand((1, entries), generator=gen, device=device)).to(h.DTYPES[case.dtype])
    if case.impl == "model":
        return lambda: family_read_torch(mem_key, mem_val, q_key, selection, shrinkage, top_k, usage)

    def swiftcuda_read():
        return ops.memory_read(
            mem_key,
            mem_val,
            q_key,
            affinity="l2",
            selection=selection,
            shrinkage=shrinkage,
            top_k=top_k,
            return_usage=usage,
            backend="cpu",
        )

    return swiftcuda_read


def measure_memory_case_here(case_json: str) -> None:
    """Subprocess side: one untimed call, then the peak resident growth of one more (JSON line)."""
    fn = build(h.Case.from_json(case_json), torch.device("cpu"))
    fn()
    if not h._reset_peak_rss():
        print(json.dumps({"peak_bytes": None}))
        return
    before = h._proc_status_bytes("VmRSS")
    result = fn()
    peak = h._proc_status_bytes("VmHWM") - before
    del result
    print(json.dumps({"peak_bytes": max(peak, 0)}))


def peak_bytes(case: h.Case) -> int | None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-case", case.to_json()],
        capture_output=True,
        text=True,
        cwd=h.REPO,
        env=env,
        check=False,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)["peak_bytes"]
    print(completed.stderr[-2000:], file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="fp32", help="comma-separated: fp32, fp16, bf16")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="a smoke run: small N, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (median reported)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls before timing")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this markdown file")
    parser.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)  # internal: one case's peak
    args = parser.parse_args(argv)
    if args.memory_case:
        measure_memory_case_here(args.memory_case)
        return
    if "cpu" not in ops.available_backends("cpu"):
        raise SystemExit("the C++ CPU backend is unavailable here (build the extension: see README)")
    device = torch.device("cpu")
    args.device = "cpu"
    repeats, warmup = h.repeats_and_warmup(args, device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}: choose from {', '.join(MODELS)}")

    cases = []
    for model in models:
        _, top_k, _, _, sizes, objects = MODELS[model]
        for dtype in h.dtypes_from(args):
            for entries in QUICK_SIZES if args.quick else sizes:
                for count in objects[:1] if args.quick else objects:
                    for impl in IMPLS:
                        cases.append(
                            h.Case("read", impl, dtype, {"model": model, "O": count, "N": entries, "k": top_k})
                        )

    rows, model_readout, agreement = [], {}, {}
    for case in cases:
        fn = build(case, device)
        result = fn()
        readout = result[0] if isinstance(result, tuple) else result
        key = (case.dtype, tuple(case.sizes.items()))
        if case.impl == "model":
            model_readout[key] = readout
        else:
            agreement[key] = same_readout(readout, model_readout.pop(key))
        del result, readout
        median = h.time_call(fn, device, repeats, max(warmup - 1, 0))
        del fn
        peak = None if args.no_memory else peak_bytes(case)
        rows.append((case, median, peak))
        print(f"  {case.impl} {case.dtype} {case.sizes}: {median / 1e3:.1f} ms", file=sys.stderr, flush=True)

    env = h.environment(device)
    model_time = {(c.dtype, tuple(c.sizes.items())): (t, p) for c, t, p in rows if c.impl == "model"}
    lines = [
        "### STM family reads on the CPU: each model's PyTorch read vs swiftcuda's",
        "",
        ", ".join(f"{k}: {v}" for k, v in env.items() if k not in ("triton", "interpreter")),
        "",
        "| model | objects | N | k | dtype | read | median ms | peak MiB | speed-up | memory saved | same readout |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, median, peak in rows:
        key = (case.dtype, tuple(case.sizes.items()))
        base_time, base_peak = model_time[key]
        speedup = f"{base_time / median:.2f}x" if case.impl == "swiftcuda" else "-"
        saved = f"{base_peak / peak:.1f}x" if case.impl == "swiftcuda" and peak and base_peak else "-"
        s = case.sizes
        lines.append(
            f"| {s['model']} | {s['O']} | {s['N']} | {s['k']} | {case.dtype} | {case.impl} | {median / 1e3:.1f} | "
            f"{'-' if peak is None else f'{peak / 2**20:.1f}'} | {speedup} | {saved} | "
            f"{f'{100 * agreement[key]:.2f}%' if case.impl == 'swiftcuda' else '-'} |"
        )
    lines += [
        "",
        f"- P = {PIXELS}, Ck = {KEY_DIM}; keys shared by the objects, values (1, O*Cv, N); median of {repeats} calls "
        f"after {warmup} warm-up.",
        "- model: the (N, P) similarity, torch.topk, softmax of the k best scattered into the zeroed similarity, "
        "values times it (usage: its sum over the queries); swiftcuda: ops.memory_read(..., affinity='l2', top_k=k, "
        "backend='cpu').",
        "- same readout: the share of query pixels whose readout (every object, every channel) is within 1e-3 of "
        "the model's, relative to its largest value; the others are near-ties at the k-th place that float32 "
        "rounding decides either way.",
        "- peak: resident-set growth during one call after an untimed one, in a fresh process with glibc's mmap "
        "threshold fixed at 64 KiB (outputs and temporaries, not the inputs).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown is not None:
        with args.markdown.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
