"""The CUDA kernels of kernels/cuda, compiled for the CPU emulator (tools/cuda_emu) and called on CPU tensors.

The build compiles the kernels FROM THE SOURCES IN THE TREE with g++ (``-DSWIFTCUDA_EMU``, the
CUDA headers of ``$CUDA_HOME/include`` for the host half-precision types, ``-include cuda_emu.h``)
together with the emulator's runtime and its C ABI (tools/cuda_emu/ops.cpp), into one shared library
loaded with ctypes. Objects and the library are cached by the SHA-256 of everything that goes
into them (sources, headers, flags, compiler), so editing a kernel and rerunning the tests checks
the edit, and an unchanged tree compiles nothing.

One lowering is applied to a copy of the sources: ``extern __shared__ T name[];`` (dynamic shared
memory, which host C++ cannot declare) becomes a pointer to the block's exactly-sized allocation.

Wrappers take CPU tensors whose last dimension is contiguous, like the CUDA ops, and run the GPU
launchers (launch_memory_read, ...) in the emulator; a failed launch raises :class:`EmulationError`
with the emulator's message (deadlock, warp-collective misuse, __trap).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
KERNEL_DIR = REPO / "kernels" / "cuda"
EMU_DIR = REPO / "tools" / "cuda_emu"
SCHEDULES = {"forward": 0, "reverse": 1, "shuffle": 2}
_DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:]*)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;"
)


class EmulationError(RuntimeError):
    """A launch failed in the emulator (its message says where and why)."""


def cuda_include_dir() -> Path:
    """The CUDA toolkit's include folder (cuda_fp16.h and friends compile as host C++)."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return Path(home) / "include"


def run_asan_child(library: Path, ops: list[str], seed: int) -> subprocess.CompletedProcess:
    """Runs tests/cuda_emu/asan_child.py on an AddressSanitizer build in a fresh process, its inputs
    and schedule drawn from ``seed``."""
    env = {**asan_environment(), "SWIFTCUDA_TEST_SEED": str(seed)}
    return subprocess.run(
        [sys.executable, "-m", "tests.cuda_emu.asan_child", str(library), *ops],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def unavailable_reason() -> str | None:
    """Why the emulator cannot be built here, or None."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler (g++)"
    if not (cuda_include_dir() / "cuda_fp16.h").is_file():
        return f"no CUDA headers in {cuda_include_dir()} (set CUDA_HOME)"
    return None


def boost_context_available() -> bool:
    """Whether Boost.Context (Debian's libboost-context-dev) is installed: fast fiber switches."""
    return Path("/usr/include/boost/context/detail/fcontext.hpp").is_file()


def default_fibers() -> str:
    """ "boost" where Boost.Context is installed, else "ucontext" (POSIX, always there, slower)."""
    return os.environ.get("SWIFTCUDA_EMU_FIBERS") or ("boost" if boost_context_available() else "ucontext")


def cache_dir() -> Path:
    root = os.environ.get("SWIFTCUDA_EMU_CACHE")
    return Path(root) if root else Path(tempfile.gettempdir()) / f"swiftcuda-cuda-emu-{os.getuid()}"


def lower_source(text: str) -> str:
    """``extern __shared__ T name[];`` -> a pointer to the block's dynamic shared memory."""
    lowered = _EXTERN_SHARED.sub(
        lambda m: f"{m.group(1)}* const {m.group(2)} = static_cast<{m.group(1)}*>(::swiftcuda_emu::dynamic_shared());",
        text,
    )
    if re.search(r"extern\s+__shared__", lowered):
        raise ValueError(
            "an extern __shared__ declaration the emulator build cannot lower (expected `extern "
            "__shared__ [__align__(n)] T name[];`)"
        )
    return lowered


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()[:24]


def _compiler_identity(cxx: str) -> bytes:
    return subprocess.run([cxx, "--version"], capture_output=True, check=True).stdout


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"emulator build failed: {' '.join(command)}\n{result.stdout}{result.stderr}")


def build(
    kernel_dir: Path = KERNEL_DIR, emu_dir: Path = EMU_DIR, *, sanitize: bool = False, fibers: str | None = None
) -> Path:
    """Compile (or find in the cache) the emulated kernels; returns the shared library's path.

    Args:
        kernel_dir: the CUDA sources (``*.cu``, ``*.cuh``), normally kernels/cuda.
        emu_dir: the emulator (tools/cuda_emu).
        sanitize: build with AddressSanitizer (load the result only in a process started with
            ``LD_PRELOAD`` of libasan, see :func:`asan_environment`).
        fibers: "boost" (Boost.Context) or "ucontext"; default :func:`default_fibers`.
    """
    cxx = os.environ.get("CXX", "g++")
    kernel_dir, emu_dir = Path(kernel_dir), Path(emu_dir)
    fibers = fibers or default_fibers()
    if fibers not in ("boost", "ucontext"):
        raise ValueError(f"fibers must be 'boost' or 'ucontext', got {fibers!r}")
    boost = fibers == "boost"
    flags = ["-std=c++17", "-fPIC", "-fno-strict-aliasing", "-DSWIFTCUDA_EMU", "-w"]
    flags += ["-O1", "-g1", "-fsanitize=address", "-fno-omit-frame-pointer"] if sanitize else ["-O2"]
    # Only the runtime switches fibers: the kernels' objects are the same for both kinds.
    runtime_flags = ["-DSWIFTCUDA_EMU_BOOST"] if boost else []
    headers = sorted([*kernel_dir.glob("*.cuh"), *kernel_dir.glob("*.h"), *emu_dir.glob("*.h")])
    header_bytes = b"".join(p.name.encode() + p.read_bytes() for p in headers)
    common = _digest(" ".join(flags).encode(), _compiler_identity(cxx), str(cuda_include_dir()).encode(), header_bytes)
    kernels = sorted(kernel_dir.glob("*.cu")) + [emu_dir / "selftest.cu"]  # device code, compiled alike
    emu_sources = [emu_dir / "runtime.cpp", emu_dir / "ops.cpp"]
    keys = {
        p: _digest(
            common.encode(),
            p.name.encode(),
            p.read_bytes(),
            " ".join(runtime_flags if p.name == "runtime.cpp" else []).encode(),
        )
        for p in [*kernels, *emu_sources]
    }
    link_flags = ["-shared", "-Wl,-Bsymbolic", *(["-fsanitize=address"] if sanitize else [])]
    link_flags += ["-lboost_context"] if boost else []
    library_key = _digest(" ".join(link_flags).encode(), *(k.encode() for k in keys.values()))
    library = cache_dir() / f"libswiftcuda_emu-{library_key}.so"
    if library.is_file():
        return library

    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="swiftcuda-emu-") as scratch:
        lowered = Path(scratch) / "kernels"
        lowered.mkdir()
        for path in [*kernel_dir.glob("*.cuh"), *kernel_dir.glob("*.h"), *kernels]:  # selftest.cu among them
            (lowered / path.name).write_text(lower_source(path.read_text()))
        includes = [f"-I{lowered}", f"-I{emu_dir}", f"-I{cuda_include_dir()}"]

        def compile_one(source: Path) -> Path:
            target = cache_dir() / f"{source.stem}-{keys[source]}.o"
            if target.is_file():
                return target
            partial = Path(scratch) / target.name
            if source.suffix == ".cu":
                command = [cxx, *flags, *includes, "-include", "cuda_emu.h", "-x", "c++", str(lowered / source.name)]
            else:
                extra = runtime_flags if source.name == "runtime.cpp" else []
                command = [cxx, *flags, *extra, *includes, str(source)]
            _run([*command, "-c", "-o", str(partial)])
            os.replace(partial, target)  # atomic: a concurrent build never sees half an object
            return target

        workers = max(1, min(len(keys), os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            objects = list(pool.map(compile_one, keys))
        partial = Path(scratch) / library.name
        # -Bsymbolic: the library's own cudaGetLastError & co., never a libcudart that torch loaded.
        _run([cxx, "-o", str(partial), *map(str, objects), *link_flags])
        os.replace(partial, library)
    logger.info("built the CUDA emulator library %s", library)
    return library


def asan_environment() -> dict[str, str]:
    """Environment for a subprocess that loads an AddressSanitizer build (libasan preloaded).

    An ASan report ends the process with exit code 23.
    """
    cxx = os.environ.get("CXX", "g++")

    def library(name: str) -> str:
        found = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True, check=True)
        return found.stdout.strip()

    env = dict(os.environ)
    # libstdc++ too: Python is not linked with it, and ASan's __cxa_throw interceptor must find it
    # when it starts (else "CHECK failed: asan_interceptors.cpp ... real___cxa_throw").
    env["LD_PRELOAD"] = f"{library('libasan.so')} {library('libstdc++.so')}"
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=23"
    return env


def _strides(tensor: Tensor, name: str) -> list[int]:
    if tensor.dim() != 3:
        raise ValueError(f"{name} must be 3-D, got shape {tuple(tensor.shape)}")
    if tensor.shape[2] > 1 and tensor.stride(2) != 1:
        raise ValueError(f"{name} must have a contiguous last dimension")
    return [tensor.stride(0), tensor.stride(1)]


def _int64_array(values: list[int]):
    return (ctypes.c_int64 * len(values))(*values)


@dataclasses.dataclass
class EmulatedKernels:
    """The emulated CUDA ops, on CPU tensors. ``multiprocessors`` sizes the splits as on such a GPU."""

    library: ctypes.CDLL
    schedule: str = "forward"
    seed: int = 0

    @classmethod
    def load(cls, path: Path | None = None, **kwargs) -> EmulatedKernels:
        return cls(ctypes.CDLL(str(path or build())), **kwargs)

    @property
    def uses_boost(self) -> bool:
        return bool(self.library.swiftcuda_emu_uses_boost())

    def _check(self, code: int, op: str) -> None:
        if code != 0:
            self.library.swiftcuda_emu_last_message.restype = ctypes.c_char_p
            message = self.library.swiftcuda_emu_last_message().decode()
            self.library.swiftcuda_emu_clear_error()
            raise EmulationError(f"{op}: CUDA error {code}: {message}")

    def _prepare(self) -> None:
        self.library.swiftcuda_emu_set_schedule(ctypes.c_int(SCHEDULES[self.schedule]), ctypes.c_uint64(self.seed))

    def memory_read(
        self,
        mem_key: Tensor,
        mem_val: Tensor,
        q_key: Tensor,
        q_val: Tensor,
        n_valid: Tensor | None = None,
        *,
        multiprocessors: int = 132,
    ) -> tuple[Tensor, int]:
        """(B, 2Cv, P) read (poisoned with NaN before the launch) and the splits the launcher chose.

        Shapes: mem_key (B, Ck, N), mem_val (B, Cv, N), q_key (B, Ck, P), q_val (B, Cv, P), n_valid (B,).
        """
        batch, key_dim, entries = mem_key.shape
        value_dim, pixels = mem_val.shape[1], q_key.shape[2]
        out = torch.full((batch, 2 * value_dim, pixels), float("nan"), dtype=mem_key.dtype)
        strides = sum(
            (
                _strides(t, n)
                for t, n in [
                    (mem_key, "mem_key"),
                    (mem_val, "mem_val"),
                    (q_key, "q_key"),
                    (q_val, "q_val"),
                    (out, "out"),
                ]
            ),
            [],
        )
        splits = ctypes.c_int(0)
        self._prepare()
        code = self.library.swiftcuda_emu_memory_read(
            ctypes.c_int(_DTYPES[mem_key.dtype]),
            _int64_array([batch, key_dim, value_dim, entries, pixels]),
            ctypes.c_void_p(mem_key.data_ptr()),
            ctypes.c_void_p(mem_val.data_ptr()),
            ctypes.c_void_p(q_key.data_ptr()),
            ctypes.c_void_p(q_val.data_ptr()),
            ctypes.c_void_p(n_valid.data_ptr() if n_valid is not None else None),
            ctypes.c_int(int(n_valid is not None and n_valid.dtype == torch.int64)),
            ctypes.c_void_p(out.data_ptr()),
            _int64_array(strides),
            ctypes.c_int(multiprocessors),
            ctypes.byref(splits),
        )
        self._check(code, "memory_read")
        return out, splits.value

    def memory_read_family(
        self,
        mem_key: Tensor,
        mem_val: Tensor,
        q_key: Tensor,
        q_val: Tensor | None = None,
        n_valid: Tensor | None = None,
        *,
        affinity: str = "dot",
        scale: float | None = None,
        shrinkage: Tensor | None = None,
        selection: Tensor | None = None,
        top_k: int | None = None,
        return_usage: bool = False,
        multiprocessors: int = 132,
    ) -> tuple[Tensor, Tensor | None, int]:
        """The family's read: (out, usage or None, splits). out (B, 2Cv, P) with ``q_val``, (B, Cv, P)
        without, and usage (B, N) float32 are poisoned with NaN before the launch.

        Shapes: mem_key (B, Ck, N), mem_val (B, Cv, N), q_key and selection (B, Ck, P), q_val (B, Cv, P),
        shrinkage (B, N), n_valid (B,).
        """
        import math

        batch, key_dim, entries = mem_key.shape
        value_dim, pixels = mem_val.shape[1], q_key.shape[2]
        channels = value_dim * (1 if q_val is None else 2)
        out = torch.full((batch, channels, pixels), float("nan"), dtype=mem_key.dtype)
        usage = torch.full((batch, entries), float("nan"), dtype=torch.float32) if return_usage else None
        placeholder = q_key
        strides = sum(
            (
                _strides(t, n)
                for t, n in [
                    (mem_key, "mem_key"),
                    (mem_val, "mem_val"),
                    (q_key, "q_key"),
                    (q_val if q_val is not None else placeholder, "q_val"),
                    (selection if selection is not None else placeholder, "selection"),
                    (out, "out"),
                ]
            ),
            [],
        )
        if shrinkage is not None and shrinkage.shape[1] > 1 and shrinkage.stride(1) != 1:
            raise ValueError("shrinkage must have a contiguous last dimension")
        strides.append(shrinkage.stride(0) if shrinkage is not None else 0)
        resolved = 1.0 / math.sqrt(key_dim) if scale is None else float(scale)
        splits = ctypes.c_int(0)

        def pointer(t: Tensor | None) -> ctypes.c_void_p:
            return ctypes.c_void_p(t.data_ptr() if t is not None else None)

        self._prepare()
        code = self.library.swiftcuda_emu_memory_read_family(
            ctypes.c_int(_DTYPES[mem_key.dtype]),
            _int64_array([batch, key_dim, value_dim, entries, pixels]),
            pointer(mem_key),
            pointer(mem_val),
            pointer(q_key),
            pointer(q_val),
            pointer(selection),
            pointer(shrinkage),
            pointer(n_valid),
            ctypes.c_int(int(n_valid is not None and n_valid.dtype == torch.int64)),
            pointer(out),
            pointer(usage),
            _int64_array(strides),
            (ctypes.c_int * 2)(int(affinity == "l2"), 0 if top_k is None else int(top_k)),
            ctypes.c_float(resolved),
            ctypes.c_int(multiprocessors),
            ctypes.byref(splits),
        )
        self._check(code, "memory_read_family")
        return out, usage, splits.value

    def memory_update_(
        self,
        key_buf: Tensor,
        val_buf: Tensor,
        n_valid: Tensor,
        new_key: Tensor,
        new_val: Tensor,
        beta: float = 0.1,
        *,
        multiprocessors: int = 132,
    ) -> int:
        """In-place update of the (B, Ck, capacity) / (B, Cv, capacity) buffers and the (B,) lengths.

        Returns the memory-axis splits the launcher chose.
        """
        from swiftcuda.ops.reference import novel_pixel_count

        batch, key_dim, capacity = key_buf.shape
        value_dim, pixels = val_buf.shape[1], new_key.shape[2]
        count = novel_pixel_count(pixels, beta)
        if batch == 0 or pixels == 0 or count < 1:
            return 0
        strides = sum(
            (
                _strides(t, n)
                for t, n in [(key_buf, "key_buf"), (val_buf, "val_buf"), (new_key, "new_key"), (new_val, "new_val")]
            ),
            [],
        )
        splits = ctypes.c_int(0)
        self._prepare()
        code = self.library.swiftcuda_emu_memory_update(
            ctypes.c_int(_DTYPES[key_buf.dtype]),
            _int64_array([batch, key_dim, value_dim, capacity, pixels, count]),
            ctypes.c_void_p(key_buf.data_ptr()),
            ctypes.c_void_p(val_buf.data_ptr()),
            ctypes.c_void_p(n_valid.data_ptr()),
            ctypes.c_int(int(n_valid.dtype == torch.int64)),
            ctypes.c_void_p(new_key.data_ptr()),
            ctypes.c_void_p(new_val.data_ptr()),
            _int64_array(strides),
            ctypes.c_int(multiprocessors),
            ctypes.byref(splits),
        )
        self._check(code, "memory_update_")
        return splits.value

    def rsp(self, probs: Tensor, factor: int = 16) -> tuple[Tensor, Tensor]:
        """(O, H, W) probabilities -> own and others maps (O, factor^2, H / factor, W / factor)."""
        probs = probs.contiguous()
        objects, height, width = probs.shape
        shape = (objects, factor * factor, height // factor, width // factor)
        own = torch.full(shape, float("nan"), dtype=probs.dtype)
        others = torch.full(shape, float("nan"), dtype=probs.dtype)
        self._prepare()
        code = self.library.swiftcuda_emu_rsp(
            ctypes.c_int(_DTYPES[probs.dtype]),
            ctypes.c_int64(objects),
            ctypes.c_int64(height),
            ctypes.c_int64(width),
            ctypes.c_int64(factor),
            ctypes.c_void_p(probs.data_ptr()),
            ctypes.c_void_p(own.data_ptr()),
            ctypes.c_void_p(others.data_ptr()),
        )
        self._check(code, "rsp")
        return own, others

    def soft_aggregate(self, probs: Tensor) -> Tensor:
        """(O, H, W) object probabilities -> (O + 1, H, W) float32 aggregated probabilities."""
        probs = probs.contiguous()
        objects, height, width = probs.shape
        out = torch.full((objects + 1, height, width), float("nan"), dtype=torch.float32)
        self._prepare()
        code = self.library.swiftcuda_emu_soft_aggregate(
            ctypes.c_int(_DTYPES[probs.dtype]),
            ctypes.c_int64(objects),
            ctypes.c_int64(height * width),
            ctypes.c_void_p(probs.data_ptr()),
            ctypes.c_void_p(out.data_ptr()),
        )
        self._check(code, "soft_aggregate")
        return out
