"""Which implementation of an op runs: the backend table and its selection rules.

Every backend is a module that defines the op functions with the signatures of
:mod:`swiftcuda.ops.reference` and a function ``unavailable_reason() -> str | None`` that says why
it cannot run here (``None`` when it can). Modules are imported on first use, so a backend whose
dependencies are missing costs nothing until it is asked for.

``backend=None`` picks the first available backend of the device's preference list; a name forces
that backend and fails with a clear message when it cannot run. When the first choice of a device
cannot run (an install without the compiled extension, or one built without its CUDA kernels),
the first op that falls back logs one WARNING naming the backend it runs instead and why.

A backend is available when its module's static checks pass AND one small op actually ran through
it and matched the reference (:func:`probe_failure`, once per backend and device): a backend that
imports but cannot launch (say torch rejecting the Triton interpreter's kernels) is never picked.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable
from types import ModuleType

import torch

from swiftcuda.errors import BackendUnavailableError
from swiftcuda.ops import reference

logger = logging.getLogger(__name__)

#: Backend name -> module implementing it.
BACKEND_MODULES: dict[str, str] = {
    "reference": "swiftcuda.ops.reference",
    "triton": "swiftcuda.ops.triton_backend",
    "cuda": "swiftcuda.ops.extension_backend",
    "cpu": "swiftcuda.ops.extension_backend",
}

#: Device type -> backends tried in order when none is named.
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cuda": ("cuda", "triton", "reference"),
    "cpu": ("cpu", "reference"),
}

#: Device types each backend can run on ("triton" on the CPU only under TRITON_INTERPRET=1,
#: which its module checks).
BACKEND_DEVICES: dict[str, frozenset[str]] = {
    "reference": frozenset({"cpu", "cuda"}),
    "triton": frozenset({"cpu", "cuda"}),
    "cuda": frozenset({"cuda"}),
    "cpu": frozenset({"cpu"}),
}


@functools.cache
def _load(backend: str) -> ModuleType | str:
    """The backend's module, or a string saying why it could not be imported."""
    loaded = sys.modules.get(BACKEND_MODULES[backend])
    if loaded is not None:  # the common path, and one torch.compile can trace
        return loaded
    try:
        return importlib.import_module(BACKEND_MODULES[backend])
    except ImportError as error:
        return f"its module could not be imported ({error})"


def _tracing_or_capturing(device_type: str) -> bool:
    """Whether running a probe now would be wrong: inside torch.compile or a CUDA graph capture."""
    if torch.compiler.is_compiling():
        return True
    return device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


@functools.cache
def probe_failure(backend: str, device_type: str) -> str | None:
    """Run ``soft_aggregate`` on a small random input through ``backend`` on ``device_type`` and
    compare it with the reference; why that failed, or None when it ran and matched.

    Cached per backend and device type: the probe runs once per process.
    """
    module = _load(backend)
    if isinstance(module, str):
        return module
    if device_type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device is available"
    generator = torch.Generator().manual_seed(0)
    try:
        probs = torch.rand(2, 5, 7, generator=generator).to(device_type)  # (O, H, W), ragged sizes
        got = module.soft_aggregate(probs)
        want = reference.soft_aggregate(probs)
        if device_type == "cuda":
            torch.cuda.synchronize()
        if got.shape != want.shape or not torch.allclose(got.float().cpu(), want.cpu(), rtol=1e-4, atol=1e-6):
            return "a probe (soft_aggregate on a 2x5x7 input) gave results that differ from the reference"
    except Exception as error:  # whatever stops a launch makes the backend unusable here
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"a probe (soft_aggregate on a 2x5x7 input) failed: {type(error).__name__}: {message}"
    return None


def unavailable_reason(backend: str, device_type: str) -> str | None:
    """Why ``backend`` cannot run on ``device_type``, or None when it can.

    Beyond the module's own checks, the first call per backend and device runs a small probe op
    (:func:`probe_failure`); inside torch.compile tracing or a CUDA graph capture the probe is
    skipped and the static checks decide.
    """
    if backend not in BACKEND_MODULES:
        return f"there is no such backend (choose from {', '.join(BACKEND_MODULES)})"
    if device_type not in BACKEND_DEVICES[backend]:
        return f"it does not run on {device_type} tensors"
    module = _load(backend)
    if isinstance(module, str):
        return module
    check = getattr(module, "unavailable_reason", None)
    reason = check(device_type) if check is not None else None
    if reason is None and backend != "reference" and not _tracing_or_capturing(device_type):
        reason = probe_failure(backend, device_type)
    return reason


def is_interpreted(backend: str, device_type: str) -> bool:
    """Whether ``backend`` runs on ``device_type`` only through an interpreter (Triton on a CPU,
    under TRITON_INTERPRET=1): right, but its times measure the interpreter, so benchmarks skip it."""
    return backend == "triton" and device_type == "cpu"


def available_backends(device_type: str) -> list[str]:
    """Names of the backends that can run on ``device_type`` here."""
    return [name for name in BACKEND_MODULES if unavailable_reason(name, device_type) is None]


def resolve(op: str, backend: str | None, device: torch.device) -> Callable:
    """The function implementing ``op`` for tensors on ``device``.

    Raises:
        BackendUnavailableError: ``backend`` was named but cannot run on this device.
    """
    device_type = device.type
    if backend is not None:
        reason = unavailable_reason(backend, device_type)
        if reason is not None:
            raise BackendUnavailableError(f"backend {backend!r} cannot run {op}: {reason}")
        return getattr(_load(backend), op)
    preference = PREFERENCE.get(device_type, ("reference",))
    first_reason = None
    for candidate in preference:
        reason = unavailable_reason(candidate, device_type)
        if reason is None:
            if candidate != preference[0] and not torch.compiler.is_compiling():
                _warn_fallback(device_type, preference[0], candidate, first_reason)
            return getattr(_load(candidate), op)
        first_reason = first_reason or reason
    raise BackendUnavailableError(f"no backend can run {op} on {device_type} tensors")


@functools.cache
def _warn_fallback(device_type: str, preferred: str, chosen: str, reason: str | None) -> None:
    """Log, once per process and case, that ops on ``device_type`` tensors run a slower backend."""
    logger.warning(
        "swiftcuda ops on %s tensors run the %r backend, not the faster %r: %s. `swiftcuda info` shows what was built.",
        device_type, chosen, preferred, reason,
    )
