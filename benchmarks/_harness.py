"""Shared benchmark machinery: timing, peak memory, throughput, the result table.

- Timing: CUDA events on a GPU (one event pair around each call, after warm-up calls), and
  ``time.perf_counter`` on the CPU; the median of the repeats is reported.
- Peak memory: on a GPU, ``torch.cuda.max_memory_allocated`` during one call, minus what was
  allocated before it (inputs excluded, outputs and temporaries included). On the CPU, PyTorch keeps
  no allocation statistics: each case runs once in a fresh subprocess, which builds the inputs,
  resets its resident-set high-water mark (Linux ``/proc/self/clear_refs``) and reports the peak
  resident memory during the call minus the resident memory before it. It counts pages the call
  touched for the first time, so memory the allocator recycles from the set-up is missed (a lower
  bound; the large temporaries of the reference dominate it), and it includes one-off costs such
  as a library's first use (a few MiB).
- Throughput: every op states its bytes moved (each input read once, each output written once)
  and its floating-point operations; GB/s and TFLOP/s follow from the median time.
- Speed-up: against the reference backend on the same case, measured in the same run.

Bench scripts build :class:`Case` lists, call :func:`run_cases` and :func:`report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from swiftcuda.cpu import describe
from swiftcuda.ops.backends import is_interpreted

REPO = Path(__file__).resolve().parent.parent
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class Case:
    """One measurement: an op implementation on fixed inputs.

    Attributes:
        op: the op's name (``memory_read``, ...).
        impl: the implementation (a backend name, or e.g. ``sdpa``).
        dtype: ``fp32``, ``fp16`` or ``bf16``.
        sizes: the case's sizes, e.g. ``{"B": 1, "Ck": 32, "Cv": 128, "N": 4096, "P": 1620}``.
    """

    op: str
    impl: str
    dtype: str
    sizes: dict

    def key(self) -> tuple:
        """What two implementations of one case share (for the speed-up)."""
        return (self.op, self.dtype, tuple(sorted(self.sizes.items())))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> Case:
        return Case(**json.loads(text))


@dataclasses.dataclass
class Result:
    case: Case
    median_us: float
    bytes_moved: int
    flops: int
    peak_bytes: int | None
    speedup: float | None = None

    @property
    def gbps(self) -> float:
        return self.bytes_moved / (self.median_us * 1e-6) / 1e9

    @property
    def tflops(self) -> float:
        return self.flops / (self.median_us * 1e-6) / 1e12


#: A benchmark's case builder: the case and device -> (the call to time, bytes moved, flops).
Builder = Callable[[Case, torch.device], tuple[Callable[[], object], int, int]]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    parser.add_argument("--dtypes", default="fp32,fp16", help="comma-separated: fp32, fp16, bf16")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (median reported)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls before timing")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this markdown file")
    parser.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)  # internal: CPU peak RSS


def repeats_and_warmup(args: argparse.Namespace, device: torch.device) -> tuple[int, int]:
    if args.quick:
        default = (3, 1)
    elif device.type == "cuda":
        default = (50, 10)
    else:
        default = (5, 1)
    return args.repeats or default[0], args.warmup if args.warmup is not None else default[1]


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median time of ``fn()`` in microseconds."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)
    else:
        for _ in range(repeats):
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e6)
    return statistics.median(times)


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated during one call beyond what was allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del result
    return peak


def _proc_status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in bytes, None where unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's resident-set high-water mark (Linux >= 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def measure_memory_case_here(case_json: str, builder: Builder) -> None:
    """Subprocess side of the CPU measurement: print the peak RSS growth of one call.

    Linux: the high-water mark is reset after the inputs are built, so the result is the peak
    resident memory during the call minus the resident memory before it. Elsewhere it falls back
    to the growth of ``ru_maxrss`` (a lower bound).
    """
    case = Case.from_json(case_json)
    fn, _, _ = builder(case, torch.device("cpu"))
    if _reset_peak_rss() and _proc_status_bytes("VmRSS") is not None:
        before = _proc_status_bytes("VmRSS")
        fn()
        peak = _proc_status_bytes("VmHWM") - before
    else:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        fn()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - before
    print(json.dumps({"peak_bytes": max(peak, 0)}))


def cpu_peak_bytes(script: Path, case: Case) -> int | None:
    """Run ``case`` in a fresh ``python script --memory-case`` and return its peak RSS growth."""
    completed = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--memory-case", case.to_json()],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
        check=False,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return int(json.loads(line)["peak_bytes"])
    return None


def run_cases(
    cases: Sequence[Case],
    builder: Builder,
    device: torch.device,
    args: argparse.Namespace,
    script: Path,
) -> list[Result]:
    """Time every case (and measure its memory), then fill in speed-ups against ``reference``."""
    repeats, warmup = repeats_and_warmup(args, device)
    results = []
    for case in cases:
        fn, bytes_moved, flops = builder(case, device)
        median = time_call(fn, device, repeats, warmup)
        peak = None
        if not args.no_memory:
            peak = cuda_peak_bytes(fn, device) if device.type == "cuda" else cpu_peak_bytes(script, case)
        del fn
        results.append(Result(case, median, bytes_moved, flops, peak))
        print(f"  {case.op} {case.impl} {case.dtype} {case.sizes}: {median:.1f} us", file=sys.stderr, flush=True)
    baseline = {r.case.key(): r.median_us for r in results if r.case.impl == "reference"}
    for r in results:
        if r.case.key() in baseline:
            r.speedup = baseline[r.case.key()] / r.median_us
    return results


def environment(device: torch.device) -> dict[str, str]:
    """Device, library versions, git commit and date, printed above every table."""
    # On a CPU: model, ISA level, native bfloat16 and threads, since the numbers differ by CPU.
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else describe()
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO).stdout
        commit += " (uncommitted changes)" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "device": name,
        "torch": torch.__version__,
        "triton": triton_version,
        "commit": commit,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "interpreter": os.environ.get("TRITON_INTERPRET", "0"),
    }


def markdown_table(results: Sequence[Result], size_keys: Sequence[str], throughput: str) -> str:
    """A markdown table; ``throughput`` is "tflops", "gbps" or "both"."""
    header = ["op", "impl", "dtype", *size_keys, "median µs"]
    if throughput in ("tflops", "both"):
        header.append("TFLOP/s")
    if throughput in ("gbps", "both"):
        header.append("GB/s")
    header += ["peak MiB", "speed-up vs reference"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        row = [r.case.op, r.case.impl, r.case.dtype, *[str(r.case.sizes[k]) for k in size_keys], f"{r.median_us:.1f}"]
        if throughput in ("tflops", "both"):
            row.append(f"{r.tflops:.3f}")
        if throughput in ("gbps", "both"):
            row.append(f"{r.gbps:.1f}")
        row.append("-" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f}")
        row.append("-" if r.speedup is None else f"{r.speedup:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def report(
    title: str,
    results: Sequence[Result],
    device: torch.device,
    size_keys: Sequence[str],
    throughput: str,
    notes: Sequence[str],
    markdown: Path | None,
) -> str:
    """Print the table with its environment to stdout and append it to ``markdown`` if given."""
    env = environment(device)
    text = "\n".join(
        [
            f"### {title}",
            "",
            ", ".join(f"{k}: {v}" for k, v in env.items()),
            "",
            markdown_table(results, size_keys, throughput),
            "",
            *[f"- {note}" for note in notes],
            "",
        ]
    )
    print(text)
    if markdown is not None:
        with markdown.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return text


def implementations(op_backends: Sequence[str], device: torch.device) -> list[str]:
    """The given available backends, the reference first (the speed-ups' baseline), without the
    interpreted ones (:func:`swiftcuda.ops.backends.is_interpreted`: the GPU suite times those)."""
    ordered = ["reference"] + [b for b in op_backends if b != "reference"]
    return list(dict.fromkeys(b for b in ordered if not is_interpreted(b, device.type)))


#: Memory sizes N of the memory benchmarks: 1620 is one 480p frame at 1/16 resolution.
MEMORY_SIZES = {"cuda": [1620, 4096, 8192, 16384, 32768, 65536], "cpu": [1620, 4096, 8192, 16384, 32768]}
QUICK_MEMORY_SIZES = {"cuda": [1620, 4096], "cpu": [512, 1620]}


def memory_sizes(args: argparse.Namespace, device: torch.device) -> list[int]:
    """The memory sizes N to run: ``--sizes`` if given, else the quick or full list for the device."""
    if args.sizes:
        return [int(n) for n in args.sizes.split(",")]
    table = QUICK_MEMORY_SIZES if args.quick else MEMORY_SIZES
    return table["cuda" if device.type == "cuda" else "cpu"]


def dtypes_from(args: argparse.Namespace) -> list[str]:
    names = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [d for d in names if d not in DTYPES]
    if unknown:
        raise SystemExit(f"unknown dtypes {unknown}: choose from {', '.join(DTYPES)}")
    return names


def random_tensor(
    shape: Sequence[int], dtype: str, device: torch.device, generator: torch.Generator, scale: float = 1.0
) -> torch.Tensor:
    """Random normal values drawn on the device in the target dtype (no large host temporaries)."""
    tensor = torch.randn(*shape, generator=generator, device=device, dtype=DTYPES[dtype])
    return tensor.mul_(scale) if scale != 1.0 else tensor


def generator_for(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
