"""GPU resources of every kernel, compiled ahead of time for sm_80 and sm_90 on a machine without a GPU.

Triton kernels: the launchers of :mod:`swiftcuda.ops._triton_launch` run at SwiftNet's shapes on
fake CUDA tensors (``FakeTensorMode``: shapes, strides, dtypes, no memory) with their kernel launch
replaced by a recorder, so every launch they would make on a GPU (grid, arguments, constexprs,
``num_warps``, ``num_stages``, memory splits for the target's multiprocessor count) is captured.
Each recorded launch is then specialised exactly as the JIT would (Triton's own binder: integer
divisibility by 16, pointer alignment from the tensor's byte offset with a 256-byte-aligned
allocation, the value 1 as a constant) and compiled with ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", arch, 32))``; ptxas runs, no GPU is needed. Its ``-v`` report gives the
registers and spills, the cubin's SASS (``cuobjdump -sass``) shows whether the dots reach the tensor
cores (HMMA / HGMMA) and how many local-memory instructions there are.

CUDA kernels: ``kernels/cuda/*.cu`` compiled with ``nvcc -cubin -Xptxas -v`` per architecture.

Results are cached by content hash (kernel source, launch, Triton version, arch) in
``$SWIFTCUDA_GPU_CACHE`` (default ``~/.cache/swiftcuda/gpu_resources``).

Oldest supported Triton: :data:`OLDEST_TRITON` (3.6, what the GPU machines run with torch 2.11).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The oldest Triton whose compile path this module (and the kernels) support.
OLDEST_TRITON = "3.6.0"
#: Bump to invalidate every cached result (a change in what is measured).
_CACHE_VERSION = "4"

ARCHES = (80, 90)


@dataclasses.dataclass(frozen=True)
class SmLimits:
    """Per-multiprocessor limits used for the occupancy estimate."""

    name: str
    multiprocessors: int
    registers: int = 65536
    max_threads: int = 2048
    max_blocks: int = 32
    shared_bytes: int = 0  # usable shared memory per SM
    shared_reserved: int = 1024  # per block, taken by the system


SM_LIMITS = {
    80: SmLimits("A100", 108, shared_bytes=164 * 1024),
    90: SmLimits("H100", 132, shared_bytes=228 * 1024),
}

#: SwiftNet's memory shapes: (key_dim, value_dim) per trunk.
MODELS = {"R18": (32, 128), "R50": (128, 512)}
#: 480x854 frames padded to multiples of 16: 480x864, r4 grid 30x54.
FRAME = (480, 854)
PADDED_FRAME = (480, 864)
FRAME_PIXELS = (480 // 16) * (864 // 16)
DTYPES = ("float32", "float16", "bfloat16")
#: Object counts recorded: one (the most memory splits), two, and four (the fewest).
OBJECTS = (1, 2, 4)
BETA = 0.1

#: The kernels whose every launch must be spill-free.
HOT_KERNELS = ("memory_read_kernel", "memory_read_combine_kernel", "best_match_kernel")


# --- launches ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Launch:
    """One recorded kernel launch, in a form a worker process can compile.

    ``args`` holds, per positional argument: ``("ptr", dtype, byte_offset)`` for a tensor, or the
    plain Python value. ``kwargs`` holds the constexprs and the launch options.
    """

    module: str
    kernel: str
    case: str  # the shape and dtype it was recorded at
    arch: int
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def specialization(self) -> str:
        """Short text of what selects the compiled variant (constexprs and options)."""
        kw = self.options
        keys = [
            k for k in kw if k.startswith(("BLOCK", "CHUNK")) or k in ("KPAD", "NUM_SPLITS", "num_warps", "num_stages")
        ]
        return " ".join(f"{k.replace('BLOCK_', 'B').replace('num_', '')}={kw[k]}" for k in keys)


def _describe(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return ("ptr", str(value.dtype).removeprefix("torch."), value.storage_offset() * value.element_size())
    return value


class _Recorder:
    """Stands in for ``wrap_triton``: ``recorder(kernel)[grid](*args, **kwargs)`` records a launch."""

    def __init__(self, case: str, arch: int) -> None:
        self.case, self.arch = case, arch
        self.launches: list[Launch] = []

    def __call__(self, kernel: Any) -> Any:
        fn = getattr(kernel, "fn", kernel)
        recorder = self

        class _Grid:
            def __getitem__(self, grid: tuple[int, ...]):
                def launch(*args: Any, **kwargs: Any) -> None:
                    recorder.launches.append(
                        Launch(
                            module=fn.__module__,
                            kernel=fn.__name__,
                            case=recorder.case,
                            arch=recorder.arch,
                            grid=tuple(int(g) for g in grid),
                            args=tuple(_describe(a) for a in args),
                            kwargs=tuple(sorted((k, _describe(v)) for k, v in kwargs.items())),
                        )
                    )

                return launch

        return _Grid()


@contextlib.contextmanager
def _recording(case: str, arch: int):
    """Route the launchers' kernel launches to a recorder, as on a GPU of ``arch``."""
    from unittest import mock

    from torch._subclasses.fake_tensor import FakeTensorMode

    from swiftcuda.ops import _triton_launch as launch_module

    recorder = _Recorder(case, arch)
    sms = SM_LIMITS[arch].multiprocessors
    with contextlib.ExitStack() as stack:
        # Whatever name the launcher module launches through (torch's wrap_triton or a compat shim).
        stack.enter_context(mock.patch.object(launch_module, "wrap_triton", recorder))
        stack.enter_context(mock.patch.object(launch_module, "INTERPRETED", False))
        stack.enter_context(mock.patch.object(launch_module, "_multiprocessors", lambda _index: sms))
        stack.enter_context(FakeTensorMode())
        yield recorder


def record_engine_launches(
    arch: int, models: Iterable[str] = MODELS, dtypes: Iterable[str] = DTYPES, objects: Iterable[int] = OBJECTS
) -> list[Launch]:
    """Every Triton launch one engine step makes at 480x854, per model, dtype and object count.

    The memory comes from :class:`~swiftcuda.inference.memory.MemoryStore` (the engine's layout:
    previous frame slot then the long-term buffer, read with a device-side valid length; the update
    compares against the long-term part and appends there).
    """
    import torch

    from swiftcuda.inference.memory import MemoryStore, default_capacity
    from swiftcuda.ops import _triton_launch as L
    from swiftcuda.ops.reference import AGGREGATION_EPS, novel_pixel_count

    pixels = FRAME_PIXELS
    launches: list[Launch] = []
    for model in models:
        key_dim, value_dim = MODELS[model]
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for count in objects:
                case = f"{model} {dtype_name} O={count}"
                with _recording(case, arch) as rec:
                    device = torch.device("cuda", 0)
                    store = MemoryStore(key_dim, value_dim, pixels, default_capacity(pixels), device, dtype)
                    store.add_objects(count)
                    keys, values, n_valid = store.readable()
                    q_key = torch.empty((1, key_dim, pixels), device=device, dtype=dtype).expand(count, -1, -1)
                    q_val = torch.empty((1, value_dim, pixels), device=device, dtype=dtype).expand(count, -1, -1)
                    out = torch.empty((count, 2 * value_dim, pixels), device=device, dtype=dtype)
                    L.launch_memory_read(keys, values, q_key, q_val, n_valid, out)
                    # The split count is a tuning knob of the op: one split must compile clean too.
                    L.launch_memory_read(keys, values, q_key, q_val, n_valid, out, num_splits=1)
                    key_buf, val_buf, lengths, new_key, new_val = _update_views(store, count)
                    L.launch_memory_update(
                        key_buf,
                        val_buf,
                        lengths,
                        new_key,
                        new_val,
                        novel_pixel_count(pixels, BETA),
                        key_buf.shape[2],
                    )
                    if model == "R18":  # the mask kernels do not depend on the trunk
                        height, width = PADDED_FRAME
                        probs = torch.empty((count, height, width), device=device, dtype=dtype)
                        factor = 16
                        cells = (count, factor * factor, height // factor, width // factor)
                        L.launch_rsp(probs, factor, probs.new_empty(cells), probs.new_empty(cells))
                        cropped = probs[:, :, : FRAME[1]]
                        soft = torch.empty((count + 1, *FRAME), device=device, dtype=torch.float32)
                        L.launch_soft_aggregate(cropped, soft, AGGREGATION_EPS)
                        frame = torch.empty((3, *FRAME), device=device, dtype=dtype)
                        counts = torch.zeros(2, device=device, dtype=torch.float32)
                        L.launch_frame_variation(frame, frame, cropped, cropped, 0.1, 0.5, counts)
                launches += rec.launches
    return _unique(launches)


@dataclasses.dataclass(frozen=True)
class FamilyShape:
    """One STM-family model's memory read at 480p (1/16 grid 30 x 54 = 1620 query pixels)."""

    key_dim: int
    value_dim: int
    entries: int  # N: the memory length recorded (the largest of the model's usual range)
    top_k: int | None
    selection: bool  # l2 with a per-pixel selection and a per-entry shrinkage (else plain l2)
    usage: bool  # the read also returns each entry's usage
    q_val: bool  # the query value is appended (STCN), else the readout alone


#: The family's reads recorded by :func:`record_family_launches`. XMem: long-term memory up to
#: about 26k entries, top-30, usage for its long-term consolidation; Cutie: 8100 entries, top-30;
#: STCN: top-20, no selection or shrinkage, the query value appended. "XMem full" is the same shape
#: with the full softmax (the op's top_k=None with l2), which none of them uses but the op offers.
FAMILY_MODELS = {
    "XMem": FamilyShape(64, 512, 26000, 30, True, True, False),
    "Cutie": FamilyShape(64, 256, 8100, 30, True, True, False),
    "STCN": FamilyShape(64, 512, 16200, 20, False, False, True),
    "XMem-full": FamilyShape(64, 512, 26000, None, True, True, False),
}

#: The kernels of the family's read: every launch must be spill-free.
FAMILY_KERNELS = ("topk_sweep_kernel", "topk_readout_kernel", "family_read_kernel", "family_usage_kernel")


def record_family_launches(
    arch: int, models: Iterable[str] = FAMILY_MODELS, dtypes: Iterable[str] = DTYPES, objects: Iterable[int] = OBJECTS
) -> list[Launch]:
    """Every Triton launch of the family's read at each model's 480p shape, dtype and object count,
    with automatic memory splits and with the split count forced to one.

    Keys, query keys, selection and shrinkage are shared by the objects (batch stride 0, as XMem's
    and Cutie's object groups share them); values are per object.
    """
    import torch

    from swiftcuda.ops import _triton_launch as L

    pixels = FRAME_PIXELS
    launches: list[Launch] = []
    for model in models:
        shape = FAMILY_MODELS[model]
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for count in objects:
                case = f"{model} {dtype_name} O={count}"
                with _recording(case, arch) as rec:
                    device = torch.device("cuda", 0)

                    def shared(
                        *size: int, device: torch.device = device, dtype: Any = dtype, count: int = count
                    ) -> Any:
                        return torch.empty((1, *size), device=device, dtype=dtype).expand(count, *size)

                    mem_key = shared(shape.key_dim, shape.entries)
                    mem_val = torch.empty((count, shape.value_dim, shape.entries), device=device, dtype=dtype)
                    q_key = shared(shape.key_dim, pixels)
                    q_val = (
                        torch.empty((count, shape.value_dim, pixels), device=device, dtype=dtype)
                        if shape.q_val
                        else None
                    )
                    selection = shared(shape.key_dim, pixels) if shape.selection else None
                    shrinkage = shared(shape.entries) if shape.selection else None
                    channels = shape.value_dim * (2 if shape.q_val else 1)
                    out = torch.empty((count, channels, pixels), device=device, dtype=dtype)
                    usage = (
                        torch.empty((count, shape.entries), device=device, dtype=torch.float32) if shape.usage else None
                    )
                    for splits in (0, 1):
                        L.launch_memory_read_family(
                            mem_key,
                            mem_val,
                            q_key,
                            q_val,
                            None,
                            out,
                            usage,
                            affinity="l2",
                            shrinkage=shrinkage,
                            selection=selection,
                            top_k=shape.top_k,
                            num_splits=splits,
                        )
                launches += rec.launches
    return _unique(launches)


def _update_views(store: Any, count: int) -> tuple[Any, ...]:
    """The memory update's arguments for every object, as the store passes them."""
    if hasattr(store, "update_views"):
        return store.update_views(slice(0, count))
    pixels = store.frame_pixels  # stores before update_views (for before/after tables)
    return (
        store.keys[:, :, pixels:],
        store.values[:, :, pixels:],
        store.long_term_length,
        store.keys[:, :, :pixels],
        store.values[:, :, :pixels],
    )


def _unique(launches: Iterable[Launch]) -> list[Launch]:
    """One launch per compiled variant (the same specialization recorded by two cases is kept once)."""
    seen: dict[str, Launch] = {}
    for launch in launches:
        seen.setdefault(_launch_key(launch), launch)
    return list(seen.values())


def _launch_key(launch: Launch) -> str:
    """What decides the compiled code: kernel, arch, argument specialization and options."""

    def spec(value: Any) -> Any:
        if isinstance(value, tuple) and value and value[0] == "ptr":
            return ("ptr", value[1], value[2] % 16 == 0)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return type(value).__name__
        if isinstance(value, int):
            return ("int", value == 1, value % 16 == 0, value >= 2**31)
        return value

    constexpr_names = {k for k, _ in launch.kwargs}
    return json.dumps(
        [
            launch.module,
            launch.kernel,
            launch.arch,
            [spec(a) for a in launch.args],
            [(k, v) for k, v in launch.kwargs if k in constexpr_names],
        ],
        default=str,
    )


# --- compiling -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Resources:
    """What ptxas and the SASS say about one compiled kernel variant."""

    kernel: str
    specialization: str
    arch: int
    case: str = ""
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    shared: int = 0
    threads: int = 0
    local_instructions: int = 0  # LDL/STL in the SASS
    mma: str = ""  # tensor-core instructions seen: "HGMMA", "HMMA", or ""
    half_dot: bool = False  # a tl.dot over 16-bit inputs (must reach the tensor cores)
    cp_async: int = 0  # LDGSTS / cp.async instructions in the SASS
    error: str = ""

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads

    def occupancy(self) -> tuple[int, int]:
        """(blocks, warps) resident per SM, from registers, shared memory and threads."""
        return occupancy(self.arch, self.registers, self.shared, self.threads)


def occupancy(arch: int, registers: int, shared: int, threads: int) -> tuple[int, int]:
    """(blocks, warps) per SM as the CUDA occupancy calculator computes them."""
    limits = SM_LIMITS[arch]
    if threads <= 0:
        return 0, 0
    warps = -(-threads // 32)
    blocks = min(limits.max_blocks, limits.max_threads // (warps * 32))
    if registers > 0:
        # Registers are allocated per warp in units of 256.
        per_warp = -(-registers * 32 // 256) * 256
        blocks = min(blocks, (limits.registers // per_warp) // warps)
    if shared > 0:
        blocks = min(blocks, limits.shared_bytes // (shared + limits.shared_reserved))
    return blocks, blocks * warps


_PTXAS_LINE = {
    "registers": re.compile(r"Used (\d+) registers"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "shared": re.compile(r"(\d+) bytes smem"),
}


def parse_ptxas(text: str) -> dict[str, dict[str, int]]:
    """``ptxas -v`` output -> {function: {registers, stack, spill_stores, spill_loads, shared}}."""
    functions: dict[str, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        found = re.search(r"Compiling entry function '([^']+)'|Function properties for (\S+)", line)
        if found:
            current = found.group(1) or found.group(2)
            functions.setdefault(current, {})
        if current is None:
            continue
        for field, pattern in _PTXAS_LINE.items():
            match = pattern.search(line)
            if match:
                functions[current][field] = int(match.group(1))
    return functions


def tool_path(name: str) -> str | None:
    """A CUDA tool: Triton's bundled copy (cuobjdump, nvdisasm, ptxas), else the CUDA toolkit's."""
    if name in ("cuobjdump", "nvdisasm", "ptxas"):
        with contextlib.suppress(Exception):
            import triton

            path = getattr(triton.knobs.nvidia, name).path
            if path and Path(path).exists():
                return path
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    path = Path(cuda_home) / "bin" / name
    return str(path) if path.exists() else shutil.which(name)


def sass_summary(cubin: bytes) -> dict[str, Any]:
    """Tensor-core, local-memory and cp.async instruction counts in a cubin's SASS."""
    sass = _cuobjdump(cubin, "-sass", check=True)
    if sass is None:
        return {"mma": "?", "local_instructions": -1, "cp_async": -1}
    mma = "HGMMA" if re.search(r"\bHGMMA\b", sass) else ("HMMA" if re.search(r"\bHMMA\b", sass) else "")
    return {
        "mma": mma,
        "local_instructions": len(re.findall(r"\b(?:LDL|STL)(?:\.\w+)*\b", sass)),
        "cp_async": len(re.findall(r"\bLDGSTS\b|\bUTMALDG\b", sass)),
    }


class _StandIn:
    """What the JIT's binder reads of a tensor: its dtype and its address (alignment)."""

    def __init__(self, dtype: Any, byte_offset: int) -> None:
        self.dtype = dtype
        self._ptr = (1 << 32) + byte_offset  # allocations are 256-byte aligned

    def data_ptr(self) -> int:
        return self._ptr


def _jit_function(module: str, name: str):
    from triton.runtime.jit import JITFunction

    obj = getattr(importlib.import_module(module), name)
    if isinstance(obj, JITFunction):
        return obj
    return JITFunction(obj.fn)  # the interpreter's wrapper: compile the same Python function


def _bind(jit, backend, args: list[Any], kwargs: dict[str, Any]):
    """The JIT's own specialization of ``args`` -> (options, signature, constexprs, attrs)."""
    from triton.runtime import jit as jit_module

    binder = jit_module.create_function_from_signature(jit.signature, jit.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    return jit._pack_args(backend, kwargs, bound_args, specialization, options)


def compile_launch(launch: Launch) -> Resources:
    """Compile one recorded launch for its arch; runs ptxas, needs no GPU."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    result = Resources(launch.kernel, launch.specialization(), launch.arch, launch.case)
    try:
        jit = _jit_function(launch.module, launch.kernel)
        target = GPUTarget("cuda", launch.arch, 32)
        backend = make_backend(target)
        args = [
            _StandIn(getattr(torch, a[1]), a[2]) if isinstance(a, tuple) and a and a[0] == "ptr" else a
            for a in launch.args
        ]
        kwargs = dict(launch.kwargs)
        options, signature, constexprs, attrs = _bind(jit, backend, args, kwargs)
        source = ASTSource(jit, signature, constexprs, attrs)
        log_text = io.StringIO()
        knobs = triton.knobs.nvidia
        with contextlib.redirect_stdout(log_text), _knob(knobs, "dump_ptxas_log", True):
            kernel = triton.compile(source, target=target, options=options.__dict__)
        ptxas = parse_ptxas(log_text.getvalue())
        name = kernel.metadata.name
        info = ptxas.get(name) or (next(iter(ptxas.values())) if ptxas else {})
        if not info:
            raise RuntimeError("no ptxas -v report (is the Triton cache serving the cubin?)")
        result.registers = info.get("registers", 0)
        result.stack = info.get("stack", 0)
        result.spill_stores = info.get("spill_stores", 0)
        result.spill_loads = info.get("spill_loads", 0)
        result.shared = int(kernel.metadata.shared)
        result.threads = 32 * int(kernel.metadata.num_warps)
        sass = sass_summary(kernel.asm["cubin"])
        result.mma, result.local_instructions, result.cp_async = (
            sass["mma"],
            sass["local_instructions"],
            sass["cp_async"],
        )
        result.half_dot = _has_half_dot(kernel.asm["ttgir"])
    except Exception as error:  # reported in the table, failed by --check and the tests
        result.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    return result


def _has_half_dot(ttgir: str) -> bool:
    """Whether the kernel has a dot over 16-bit float operands (what must run on tensor cores)."""
    for line in ttgir.splitlines():
        if re.search(r"\b(tt\.dot|ttng\.warp_group_dot|ttng\.tc_gen5_mma)\b", line) and re.search(r"x(f16|bf16)", line):
            return True
    return False


@contextlib.contextmanager
def _knob(namespace: Any, name: str, value: Any):
    old = getattr(namespace, name)
    setattr(namespace, name, value)
    try:
        yield
    finally:
        setattr(namespace, name, old)


def _worker_init() -> None:
    # Compiled code, not the interpreter; a private Triton cache so that ptxas always runs (and
    # reports): results are cached here by content hash instead.
    os.environ["TRITON_INTERPRET"] = "0"
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="swiftcuda-triton-")


def _compile_in_worker(launch: Launch) -> Resources:
    _worker_init()
    return compile_launch(launch)


# --- cache ---------------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("SWIFTCUDA_GPU_CACHE", Path.home() / ".cache" / "swiftcuda" / "gpu_resources"))


def _source_hash(module: str) -> str:
    """SHA-256 of a kernel module's source and of the sibling modules it imports (``from .x import``):
    an edit of a shared helper (key_tiles, family_logits) recompiles the kernels that use it."""
    spec = importlib.util.find_spec(module)
    if not (spec and spec.origin):
        return ""
    hasher, seen, todo = hashlib.sha256(), set(), [Path(spec.origin)]
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        text = path.read_bytes()
        hasher.update(path.name.encode() + text)
        todo += [
            path.with_name(f"{name}.py")
            for name in re.findall(rb"^from \.(\w+) import", text, re.M)
            for name in [name.decode()]
        ]
    return hasher.hexdigest()


def triton_version() -> str:
    import triton

    return triton.__version__


def _cache_key(launch: Launch) -> str:
    text = json.dumps(
        [_CACHE_VERSION, triton_version(), _source_hash(launch.module), _launch_key(launch)],
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def compile_all(launches: Sequence[Launch], workers: int = 2) -> list[Resources]:
    """Compile every launch (cached by content hash), ``workers`` processes at a time."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    results: list[Resources | None] = [None] * len(launches)
    todo: list[int] = []
    for index, launch in enumerate(launches):
        path = directory / f"{_cache_key(launch)}.json"
        if path.exists():
            cached = Resources(**json.loads(path.read_text()))
            cached.case = launch.case
            results[index] = cached
        else:
            todo.append(index)
    if todo:
        log.info("compiling %d kernel variants (%d cached)", len(todo), len(launches) - len(todo))
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for index, result in zip(todo, pool.map(_compile_in_worker, [launches[i] for i in todo])):
                results[index] = result
                if not result.error:
                    path = directory / f"{_cache_key(launches[index])}.json"
                    path.write_text(json.dumps(dataclasses.asdict(result)))
    return [r for r in results if r is not None]


# --- CUDA kernels --------------------------------------------------------------------------------

CUDA_DIR = Path(__file__).resolve().parents[1] / "kernels" / "cuda"


def compile_cuda(arch: int, directory: Path = CUDA_DIR, names: Iterable[str] | None = None) -> list[Resources]:
    """Compile each ``kernels/cuda/*.cu`` (or only the files ``names``) to a cubin for ``arch``; one
    row per kernel function."""
    nvcc = tool_path("nvcc")
    if nvcc is None:
        return [Resources("kernels/cuda", "", arch, error="nvcc not found")]
    wanted = set(names) if names is not None else None
    results: list[Resources] = []
    for source in sorted(directory.glob("*.cu")):
        if wanted is None or source.name in wanted:
            results += _compile_cuda_file(nvcc, source, arch)
    return results


def _compile_cuda_file(nvcc: str, source: Path, arch: int) -> list[Resources]:
    headers = sorted(source.parent.glob("*.cuh")) + sorted(source.parent.glob("*.h"))
    digest = hashlib.sha256(
        b"".join(p.read_bytes() for p in [source, *headers]) + f"{arch}{_CACHE_VERSION}{_nvcc_version(nvcc)}".encode()
    ).hexdigest()
    path = cache_dir() / f"cuda-{digest}.json"
    if path.exists():
        return [Resources(**row) for row in json.loads(path.read_text())]
    import torch.utils.cpp_extension as ext

    includes = [f"-I{p}" for p in ext.include_paths()] + [f"-I{source.parent}"]
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        command = [
            nvcc,
            "-cubin",
            "-O3",
            "-std=c++17",
            f"-arch=sm_{arch}",
            "-Xptxas",
            "-v",
            *includes,
            str(source),
            "-o",
            str(cubin),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            return [Resources(source.name, "", arch, error=done.stderr.strip().splitlines()[-1][:300])]
        report = parse_ptxas(done.stderr)
        sass_by_function = _sass_by_function(cubin.read_bytes())
        threads_by_function = _max_threads_by_function(cubin.read_bytes())
    rows = []
    for function, info in report.items():
        if "registers" not in info:
            continue
        sass = sass_by_function.get(function, "")
        mma = "HGMMA" if "HGMMA" in sass else ("HMMA" if "HMMA" in sass else "")
        rows.append(
            Resources(
                _demangle(function),
                source.name,
                arch,
                registers=info.get("registers", 0),
                stack=info.get("stack", 0),
                spill_stores=info.get("spill_stores", 0),
                spill_loads=info.get("spill_loads", 0),
                shared=info.get("shared", 0),
                threads=threads_by_function.get(function, 0),
                local_instructions=len(re.findall(r"\b(?:LDL|STL)(?:\.\w+)*\b", sass)),
                mma=mma,
                cp_async=len(re.findall(r"\bLDGSTS\b", sass)),
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    return rows


def _nvcc_version(nvcc: str) -> str:
    return subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]


def _cuobjdump(cubin: bytes, flag: str, check: bool = False) -> str | None:
    """``cuobjdump FLAG`` of a cubin (``-sass``, ``-elf``); None without the tool; ``check``
    raises when it fails."""
    tool = tool_path("cuobjdump")
    if tool is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        return subprocess.run([tool, flag, file.name], capture_output=True, text=True, check=check).stdout


def _sass_by_function(cubin: bytes) -> dict[str, str]:
    sass = _cuobjdump(cubin, "-sass")
    if sass is None:
        return {}
    functions: dict[str, str] = {}
    for chunk in re.split(r"\n\s*Function : ", sass)[1:]:
        name, _, body = chunk.partition("\n")
        functions[name.strip()] = body
    return functions


def _demangle(name: str) -> str:
    """``void ns::(anonymous namespace)::kernel<float, 64>(Params)`` -> ``kernel<float, 64>``."""
    tool = shutil.which("c++filt")
    if tool is None:
        return name
    text = subprocess.run([tool, name], capture_output=True, text=True).stdout.strip() or name
    text = text.replace("(anonymous namespace)::", "").removeprefix("void ")
    text = text.rsplit("(", 1)[0] if text.endswith(")") else text
    return text.split("::")[-1] if "<" not in text else re.sub(r"^[\w:]*::(?=\w+<)", "", text)


def _max_threads_by_function(cubin: bytes) -> dict[str, int]:
    """Each kernel's ``__launch_bounds__`` block size (EIATTR_MAX_THREADS of its .nv.info section):
    the CUDA launchers launch exactly that many threads."""
    elf = _cuobjdump(cubin, "-elf")
    if elf is None:
        return {}
    threads: dict[str, int] = {}
    for section in re.split(r"\n(?=\.nv\.info\.)", elf)[1:]:
        name = section.split("\n", 1)[0].removeprefix(".nv.info.").strip()
        found = re.search(r"EIATTR_MAX_THREADS\s*\n\s*Format:[^\n]*\n\s*Value:\s*([0-9a-fx ]+)", section)
        if found:
            dims = [int(v, 16) for v in found.group(1).split()]
            total = 1
            for dim in dims:
                total *= dim
            threads[name] = total
    return threads


# --- the table -----------------------------------------------------------------------------------


COLUMNS = (
    "kernel",
    "specialization",
    "arch",
    "regs",
    "spill st/ld B",
    "stack",
    "smem B",
    "blocks/SM",
    "warps/SM",
    "tensor cores",
    "LDL+STL",
    "cp.async",
    "status",
)


def row(result: Resources) -> list[str]:
    blocks, warps = result.occupancy()
    tensor = result.mma or ("MISSED" if result.half_dot else "-")
    return [
        result.kernel,
        (result.case + " " + result.specialization).strip(),
        f"sm_{result.arch}",
        str(result.registers),
        f"{result.spill_stores}/{result.spill_loads}",
        str(result.stack),
        str(result.shared),
        str(blocks) if result.threads else "?",
        str(warps) if result.threads else "?",
        tensor,
        str(result.local_instructions),
        str(result.cp_async),
        "; ".join(problems(result)) or "ok",
    ]


def problems(result: Resources, min_warps: int = 16) -> list[str]:
    """What the checks fail on: compile errors, spills in the hot kernels, the family's kernels and
    every CUDA kernel, half dots off the tensor cores, and hot kernels below ``min_warps`` resident
    warps per SM."""
    found = []
    if result.error:
        return [f"error: {result.error}"]
    if result.half_dot and result.mma not in ("HMMA", "HGMMA"):
        found.append("half dot off tensor cores")
    hot = result.kernel in HOT_KERNELS
    cuda = result.specialization.endswith(".cu")
    if (hot or result.kernel in FAMILY_KERNELS or cuda) and result.spills:
        found.append("spills")
    if hot and result.kernel != "memory_read_combine_kernel" and result.threads and result.occupancy()[1] < min_warps:
        found.append(f"<{min_warps} warps/SM")
    return found


def format_table(results: Sequence[Resources], markdown: bool = False) -> str:
    rows = [row(r) for r in results]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in rows]
    return "\n".join(lines)


def triton_resources(
    arches: Iterable[int] = ARCHES,
    workers: int = 2,
    kernels: Iterable[str] | None = None,
    family: bool = True,
    **selection: Any,
) -> list[Resources]:
    """Record the engine's launches (and with ``family`` the STM family's reads,
    :func:`record_family_launches`) for each arch and compile them (cached); ``kernels``: only these."""
    wanted = set(kernels) if kernels is not None else None
    launches = [
        launch
        for arch in arches
        for launch in record_engine_launches(arch, **selection)
        if wanted is None or launch.kernel in wanted
    ]
    if family:
        launches += [
            launch
            for arch in arches
            for launch in record_family_launches(
                arch, dtypes=selection.get("dtypes", DTYPES), objects=selection.get("objects", OBJECTS)
            )
            if wanted is None or launch.kernel in wanted
        ]
    return compile_all(launches, workers=workers)
