"""Loading the compiled extension ``swiftcuda._C`` (C++ CPU and CUDA kernels): the module of the
"cpu" and "cuda" backends (:mod:`swiftcuda.ops.backends`).

Importing ``swiftcuda._C`` registers the ops in ``torch.ops.swiftcuda``, with the schemas of
:mod:`swiftcuda.ops.schema`. When it is missing (built without torch, or with
``SWIFTCUDA_NO_EXTENSION=1``), fails to load (for example it was built against another torch), or
is switched off at run time (``SWIFTCUDA_NO_EXTENSION=1`` in the environment, which also simulates
an install without it), :func:`status` says why, the reason is logged once, and every other backend
keeps working; the first op that falls back to a slower backend then logs a WARNING
(:mod:`swiftcuda.ops.backends`) and ``swiftcuda info`` says it too. On success the fake (meta)
implementations are registered here, so that ``torch.compile`` and CUDA graph capture can trace
through the ops without running them.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
from dataclasses import dataclass, field

import torch

from swiftcuda.ops.reference import novel_pixel_count

logger = logging.getLogger(__name__)

#: The ops the extension defines in torch.ops.swiftcuda (plus the test hooks starting with "_").
EXTENSION_OPS = (
    "memory_read",
    "memory_read_family",
    "memory_update",
    "memory_update_",
    "rsp",
    "soft_aggregate",
    "labels",
    "conv3x3",
    "conv3x3_available",
    "build_info",
)


@dataclass(frozen=True)
class ExtensionStatus:
    """What loading the extension found.

    Attributes:
        loaded: the library loaded and registered its ops.
        error: why it did not load (None when it did).
        path: the shared library's file, when found.
        cuda: the CUDA kernels were compiled in.
        cuda_version: the CUDA toolkit they were compiled with.
        cuda_archs: compute capabilities with machine code (80 = sm_80).
        ptx_archs: compute capabilities with embedded PTX (JIT-compiled on newer GPUs).
        torch_version: the torch version the extension was compiled against.
        openmp: the OpenMP version the CPU kernels use (None without OpenMP).
        winograd: the CPU 3x3 convolution (``conv3x3``, NNPACK's Winograd kernels) can run: torch
            was built with NNPACK and this CPU supports it.
    """

    loaded: bool
    error: str | None = None
    path: str | None = None
    cuda: bool = False
    cuda_version: str | None = None
    cuda_archs: tuple[int, ...] = field(default_factory=tuple)
    ptx_archs: tuple[int, ...] = field(default_factory=tuple)
    torch_version: str | None = None
    openmp: int | None = None
    winograd: bool = False


def _register_fakes() -> None:
    """Shape-only implementations for FakeTensor tracing (torch.compile, CUDA graphs, meta)."""

    @torch.library.register_fake("swiftcuda::memory_read")
    def _memory_read_fake(mem_key, mem_val, q_key, q_val, n_valid=None):
        return q_val.new_empty((q_val.shape[0], 2 * mem_val.shape[1], q_key.shape[2]))

    @torch.library.register_fake("swiftcuda::memory_read.into")
    def _memory_read_into_fake(mem_key, mem_val, q_key, q_val, n_valid, out):
        return None

    @torch.library.register_fake("swiftcuda::memory_read_family")
    def _memory_read_family_fake(
        mem_key,
        mem_val,
        q_key,
        q_val=None,
        n_valid=None,
        shrinkage=None,
        selection=None,
        affinity="dot",
        scale=None,
        top_k=None,
        return_usage=False,
    ):
        batch, channels = mem_key.shape[0], mem_val.shape[1] * (1 if q_val is None else 2)
        usage_shape = (batch, mem_key.shape[2]) if return_usage else (0, 0)
        return mem_val.new_empty((batch, channels, q_key.shape[2])), mem_key.new_empty(usage_shape, dtype=torch.float32)

    @torch.library.register_fake("swiftcuda::memory_read_family.into")
    def _memory_read_family_into_fake(
        mem_key, mem_val, q_key, q_val, n_valid, shrinkage, selection, affinity, scale, top_k, out, usage
    ):
        return None

    @torch.library.register_fake("swiftcuda::memory_update")
    def _memory_update_fake(mem_key, mem_val, new_key, new_val, beta):
        total = mem_key.shape[2] + novel_pixel_count(new_key.shape[2], beta)
        return (
            mem_key.new_empty((mem_key.shape[0], mem_key.shape[1], total)),
            mem_val.new_empty((mem_val.shape[0], mem_val.shape[1], total)),
        )

    @torch.library.register_fake("swiftcuda::memory_update_")
    def _memory_update_inplace_fake(key_buf, val_buf, n_valid, new_key, new_val, beta):
        return None

    @torch.library.register_fake("swiftcuda::rsp")
    def _rsp_fake(probs, factor):
        objects, height, width = probs.shape
        shape = (objects, factor * factor, height // factor, width // factor)
        return probs.new_empty(shape), probs.new_empty(shape)

    @torch.library.register_fake("swiftcuda::soft_aggregate")
    def _soft_aggregate_fake(object_probs):
        objects, height, width = object_probs.shape
        return object_probs.new_empty((objects + 1, height, width), dtype=torch.float32)

    @torch.library.register_fake("swiftcuda::labels")
    def _labels_fake(probs, ids):
        return ids.new_empty(probs.shape[1:])

    @torch.library.register_fake("swiftcuda::conv3x3")
    def _conv3x3_fake(input, weight, bias=None, relu=False):
        batch, _, height, width = input.shape
        return input.new_empty((batch, weight.shape[0], height, width))


def _read_build_info(path: str | None) -> ExtensionStatus:
    info = json.loads(torch.ops.swiftcuda.build_info())
    return ExtensionStatus(
        loaded=True,
        path=path,
        cuda=bool(info["cuda"]),
        cuda_version=info["cuda_version"],
        cuda_archs=tuple(info["cuda_archs"]),
        ptx_archs=tuple(info["ptx_archs"]),
        torch_version=info["torch"],
        openmp=info["openmp"],
        winograd=bool(torch.ops.swiftcuda.conv3x3_available()),
    )


@functools.cache
def status() -> ExtensionStatus:
    """Load the extension once and report what was found; never raises."""
    if os.environ.get("SWIFTCUDA_NO_EXTENSION") == "1":
        reason = "the extension swiftcuda._C is switched off (SWIFTCUDA_NO_EXTENSION=1 in the environment)"
        logger.info("C++/CUDA kernels unavailable, using the other backends: %s", reason)
        return ExtensionStatus(loaded=False, error=reason)
    try:
        module = importlib.import_module("swiftcuda._C")
    except ImportError as error:
        missing = isinstance(error, ModuleNotFoundError) and error.name == "swiftcuda._C"
        reason = (
            "the extension swiftcuda._C is not built (install with "
            "`pip install --no-build-isolation .` after torch, with a C++ compiler)"
            if missing
            else f"the extension swiftcuda._C failed to load: {error}"
        )
        logger.info("C++/CUDA kernels unavailable, using the other backends: %s", reason)
        return ExtensionStatus(loaded=False, error=reason)
    try:
        result = _read_build_info(getattr(module, "__file__", None))
        _register_fakes()
    except Exception as error:  # a stale or foreign build: report it rather than break import
        reason = f"the extension swiftcuda._C loaded but is not usable: {error}"
        logger.info("C++/CUDA kernels unavailable, using the other backends: %s", reason)
        return ExtensionStatus(loaded=False, error=reason, path=getattr(module, "__file__", None))
    logger.info("loaded %s (CUDA kernels: %s)", result.path, result.cuda_archs or "none")
    return result


def unavailable_reason(device_type: str) -> str | None:
    """Why the extension cannot run ops on ``device_type`` tensors here, or None when it can."""
    found = status()
    if not found.loaded:
        return found.error
    if device_type == "cpu":
        return None
    if device_type != "cuda":
        return f"the extension has no kernels for {device_type} tensors"
    if not found.cuda:
        return "the extension was built without the CUDA kernels (no CUDA toolkit at build time)"
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        capability = 10 * major + minor
        # Machine code runs on the same major version at an equal or higher minor; PTX JIT-compiles
        # on anything at least as new.
        runs = any(a // 10 == major and a <= capability for a in found.cuda_archs)
        runs = runs or any(a <= capability for a in found.ptx_archs)
        if not runs:
            return (
                f"the CUDA kernels were compiled for sm_{found.cuda_archs} but this GPU is sm_{capability} "
                "(rebuild with SWIFTCUDA_CUDA_ARCHS)"
            )
    return None
