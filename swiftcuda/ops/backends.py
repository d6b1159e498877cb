"""Which implementation of an op runs: the backend table and its selection rules.

Every backend is a module that defines the op functions with the signatures of
:mod:`swiftcuda.ops.reference` and a function ``unavailable_reason() -> str | None`` that says why
it cannot run here (``None`` when it can). Modules are imported on first use, so a backend whose
dependencies are missing costs nothing until it is asked for.

``backend=None`` picks the first available backend of the device's preference list; a name forces
that backend and fails with a clear message when it cannot run.
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


def unavailable_reason(backend: str, device_type: str) -> str | None:
    """Why ``backend`` cannot run on ``device_type``, or None when it can."""
    if backend not in BACKEND_MODULES:
        return f"there is no such backend (choose from {', '.join(BACKEND_MODULES)})"
    if device_type not in BACKEND_DEVICES[backend]:
        return f"it does not run on {device_type} tensors"
    module = _load(backend)
    if isinstance(module, str):
        return module
    check = getattr(module, "unavailable_reason", None)
    return check(device_type) if check is not None else None


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
    for candidate in PREFERENCE.get(device_type, ("reference",)):
        if unavailable_reason(candidate, device_type) is None:
            return getattr(_load(candidate), op)
    raise BackendUnavailableError(f"no backend can run {op} on {device_type} tensors")
