"""Which implementation of an op runs: the backend table and its selection rules.

Each row of :data:`BACKENDS` is a :class:`Backend`: its name, the device types it runs on, the
module that loads it, and one :class:`Kernel` per op it implements, stating which inputs that
implementation takes (dtypes, size ranges, optional arguments). Every implementation takes the
arguments that :mod:`swiftcuda.ops.schema` declares for its op, so nothing here restates a
signature.

Why a backend cannot take a call (:meth:`Backend.not_supported_reasons`) has two parts:

- availability, the same for every call on a device type (:func:`unavailable_reason`): its module
  imports, the module's static checks pass (the extension was built with these kernels, a GPU is
  present, ...) and one small op actually ran through it and matched the reference
  (:func:`probe_failure`, once per backend and device type), so that a backend that imports but
  cannot launch is never picked;
- the inputs (:meth:`Kernel.not_supported_reasons`): what its kernels were written for, such as the
  largest key dimension of the CUDA kernels. These are decided from the tensors' metadata, never
  their values, so choosing needs no host synchronisation.

``backend=None`` runs the first backend of the device's preference (:data:`PREFERENCE`) that takes
the call. When the device's first choice cannot run here at all (an install without the compiled
extension, or one built without its CUDA kernels), the first op that falls back logs one WARNING
naming the backend it runs instead and why. A backend that runs here but cannot take these inputs
is skipped with one log record per op, skipped backend and reason: INFO when another fused backend
takes the call, WARNING when only the reference (the slow specification) does. A named backend
that cannot take the call raises :class:`~swiftcuda.errors.BackendUnavailableError` with every
reason. Inside torch.compile tracing or a CUDA graph capture no probe runs (the static checks
decide) and nothing is logged.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import torch
from torch import Tensor

from swiftcuda.errors import BackendUnavailableError
from swiftcuda.ops import reference, schema

logger = logging.getLogger(__name__)

#: The dtypes of the compiled kernels.
FLOAT_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16})

#: In :attr:`Kernel.options`: the kernel takes the option with any value.
ANY = None

#: As :attr:`Kernel.options`: the kernel takes every option with every value (the reference).
EVERY_OPTION = None


@dataclass(frozen=True)
class Inputs:
    """What decides whether a backend takes one call: metadata and options, never tensor values.

    Attributes:
        device_type: the tensors' device type ("cpu", "cuda").
        dtype: the dtype of the op's float tensors.
        sizes: named sizes that kernels may limit (``key_dim``, ``value_dim``, ...).
        options: the optional arguments the call gives, i.e. not left at their defaults: name ->
            value, ``True`` for a tensor.
    """

    device_type: str
    dtype: torch.dtype
    sizes: Mapping[str, int] = field(default_factory=dict)
    options: Mapping[str, object] = field(default_factory=dict)


def describe(tensor: Tensor, sizes: Mapping[str, int] | None = None, **options: object) -> Inputs:
    """The :class:`Inputs` of a call whose tensors have ``tensor``'s device and dtype.

    Args:
        tensor: one of the call's float tensors.
        sizes: named sizes of the call (a size of None is left out).
        options: the call's optional arguments; None and False mean "not given", so pass an option
            at its default as None. A tensor is described by ``True`` (its values are never read).
    """
    given = {
        name: True if isinstance(value, Tensor) else value
        for name, value in options.items()
        if value is not None and value is not False
    }
    known = {name: size for name, size in (sizes or {}).items() if size is not None}
    return Inputs(tensor.device.type, tensor.dtype, known, given)


@dataclass(frozen=True)
class Kernel:
    """One backend's implementation of one op, and the inputs it takes.

    Attributes:
        dtypes: the tensor dtypes it takes.
        sizes: named sizes it limits: name -> (smallest, largest) value it takes. A size not
            named here, or not described by the call, is not limited.
        options: the optional arguments it takes: name -> the values it takes (:data:`ANY`: every
            value); a given option not named here is refused. :data:`EVERY_OPTION` takes them all.
        check: further reasons it refuses some inputs, for limits the fields above cannot state.
        function: what runs, when not the backend's registered op of that name (the extension
            runs the reference's ``frame_variation``, which has no compiled kernel).
    """

    dtypes: frozenset[torch.dtype] = FLOAT_DTYPES
    sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    options: Mapping[str, Collection[object] | None] | None = field(default_factory=dict)
    check: Callable[[Inputs], list[str]] | None = None
    function: Callable | None = None

    def not_supported_reasons(self, inputs: Inputs) -> list[str]:
        """Why this kernel cannot take ``inputs``: one sentence per reason, empty when it can."""
        reasons = []
        if inputs.dtype not in self.dtypes:
            reasons.append(f"it does not take {inputs.dtype} tensors")
        for name, (low, high) in self.sizes.items():
            size = inputs.sizes.get(name)
            if size is not None and not low <= size <= high:
                reasons.append(f"it takes {name} from {low} to {high}, not {size}")
        if self.options is not EVERY_OPTION:
            for name, value in inputs.options.items():
                if name not in self.options:
                    reasons.append(f"it does not take {name}")
                elif self.options[name] is not ANY and value not in self.options[name]:
                    reasons.append(f"it does not take {name}={value!r}")
        if self.check is not None:
            reasons.extend(self.check(inputs))
        return reasons


@dataclass(frozen=True)
class Backend:
    """One row of the backend table.

    Attributes:
        name: what ``backend=`` takes.
        devices: the device types it runs on.
        module: imported on first use: it registers the backend's ops, and its optional
            ``unavailable_reason(device_type) -> str | None`` says why the backend cannot run here.
        namespace: the ``torch.ops`` namespace holding its ops under the names of
            :data:`~swiftcuda.ops.schema.SCHEMAS`; None: the module's functions named after the ops.
        kernels: op -> its implementation; an op not listed has none here.
    """

    name: str
    devices: frozenset[str]
    module: str
    namespace: str | None
    kernels: Mapping[str, Kernel]

    def input_reasons(self, op: str, inputs: Inputs) -> list[str]:
        """Why its kernels cannot take ``inputs``, whether or not it can run here."""
        kernel = self.kernels.get(op)
        if kernel is None:
            return [f"it has no {op} kernel"]
        return kernel.not_supported_reasons(inputs)

    def not_supported_reasons(self, op: str, inputs: Inputs) -> list[str]:
        """Why this backend cannot run ``op`` on ``inputs`` here; empty when it can."""
        reason = unavailable_reason(self.name, inputs.device_type)
        return [reason] if reason is not None else self.input_reasons(op, inputs)

    def implementation(self, op: str) -> Callable:
        """The function that runs ``op`` on this backend, taking the op's schema arguments."""
        kernel = self.kernels[op]
        if kernel.function is not None:
            return kernel.function
        name, overload = schema.split_name(op)
        if self.namespace is None:
            # sys.modules first: a lookup torch.compile traces (the module is loaded by now).
            return getattr(sys.modules.get(self.module) or _load(self.module), name)
        # Loading the module (by the availability check, before any call gets here) registered these.
        return getattr(getattr(getattr(torch.ops, self.namespace), name), overload)


# --- the table ----------------------------------------------------------------------------------

#: The largest key dimension of the CUDA kernels: their key tiles live in shared memory
#: (kMaxReadKeyDim and kMaxUpdateKeyDim in kernels/cuda/; a test holds these equal to them).
CUDA_MAX_READ_KEY_DIM = 128
CUDA_MAX_UPDATE_KEY_DIM = 128

#: The read's one option today: valid lengths on the device.
_READ_OPTIONS = {"n_valid": ANY}


#: The family read's options, all taken by every fused backend (top_k up to 64 is the op's contract).
_FAMILY_OPTIONS = {
    name: ANY
    for name in ("n_valid", "affinity", "scale", "shrinkage", "selection", "top_k", "return_usage", "readout_only")
}


def _fused(read: Kernel, update: Kernel, family: Kernel, frame_variation: Kernel | None = None) -> dict[str, Kernel]:
    """The kernels of a compiled backend: ``read`` serves both overloads of the read, ``update``
    both forms of the update, ``family`` the read with the STM family's options."""
    return {
        "memory_read": read,
        "memory_read.into": read,
        "memory_read_family": family,
        "memory_update": update,
        "memory_update_": update,
        "rsp": Kernel(),
        "soft_aggregate": Kernel(),
        "frame_variation": frame_variation or Kernel(),
    }


# frame_variation has no compiled kernel in the extension: a few elementwise passes and two sums.
_EXTENSION_FRAME_VARIATION = Kernel(function=reference.frame_variation)

#: Backend name -> backend.
BACKENDS: dict[str, Backend] = {
    "reference": Backend(
        name="reference",
        devices=frozenset({"cpu", "cuda"}),
        module="swiftcuda.ops.reference",
        namespace=None,
        kernels={op: Kernel(dtypes=FLOAT_DTYPES | {torch.float64}, options=EVERY_OPTION) for op in schema.SCHEMAS},
    ),
    "triton": Backend(
        name="triton",
        devices=frozenset({"cpu", "cuda"}),  # on the CPU only under TRITON_INTERPRET=1
        module="swiftcuda.ops.triton_backend",
        namespace="swiftcuda_triton",
        kernels=_fused(read=Kernel(options=_READ_OPTIONS), update=Kernel(), family=Kernel(options=_FAMILY_OPTIONS)),
    ),
    "cuda": Backend(
        name="cuda",
        devices=frozenset({"cuda"}),
        module="swiftcuda.ops.extension",
        namespace="swiftcuda",
        kernels=_fused(
            read=Kernel(sizes={"key_dim": (1, CUDA_MAX_READ_KEY_DIM)}, options=_READ_OPTIONS),
            update=Kernel(sizes={"key_dim": (1, CUDA_MAX_UPDATE_KEY_DIM)}),
            family=Kernel(sizes={"key_dim": (1, CUDA_MAX_READ_KEY_DIM)}, options=_FAMILY_OPTIONS),
            frame_variation=_EXTENSION_FRAME_VARIATION,
        ),
    ),
    "cpu": Backend(
        name="cpu",
        devices=frozenset({"cpu"}),
        module="swiftcuda.ops.extension",
        namespace="swiftcuda",
        kernels=_fused(
            read=Kernel(options=_READ_OPTIONS),
            update=Kernel(),
            family=Kernel(options=_FAMILY_OPTIONS),
            frame_variation=_EXTENSION_FRAME_VARIATION,
        ),
    ),
}

#: Device type -> backends tried in order when none is named.
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cuda": ("cuda", "triton", "reference"),
    "cpu": ("cpu", "reference"),
}


# --- availability -------------------------------------------------------------------------------


@functools.cache
def _load(module: str) -> ModuleType | str:
    """The backend module, or a string saying why it could not be imported."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    try:
        return importlib.import_module(module)
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
    module = _load(BACKENDS[backend].module)
    if isinstance(module, str):
        return module
    if device_type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device is available"
    generator = torch.Generator().manual_seed(0)
    try:
        probs = torch.rand(2, 5, 7, generator=generator).to(device_type)  # (O, H, W), ragged sizes
        got = BACKENDS[backend].implementation("soft_aggregate")(probs)
        want = reference.soft_aggregate(probs)
        if device_type == "cuda":
            torch.cuda.synchronize()
        if got.shape != want.shape or not torch.allclose(got.float().cpu(), want.cpu(), rtol=1e-4, atol=1e-6):
            return "a probe (soft_aggregate on a 2x5x7 input) gave results that differ from the reference"
    except Exception as error:  # whatever stops a launch makes the backend unusable here
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"a probe (soft_aggregate on a 2x5x7 input) failed: {type(error).__name__}: {message}"
    return None


# Evaluated, not traced, by torch.compile: the answer is a constant of the compiled graph (the
# module's checks and the loader are plain Python that tracing cannot follow).
@torch.compiler.assume_constant_result
def unavailable_reason(backend: str, device_type: str) -> str | None:
    """Why ``backend`` cannot run on ``device_type`` here, whatever the inputs; None when it can.

    Beyond the module's own checks, the first call per backend and device runs a small probe op
    (:func:`probe_failure`); inside torch.compile tracing or a CUDA graph capture the probe is
    skipped and the static checks decide.
    """
    if backend not in BACKENDS:
        return f"there is no such backend (choose from {', '.join(BACKENDS)})"
    if device_type not in BACKENDS[backend].devices:
        return f"it does not run on {device_type} tensors"
    module = _load(BACKENDS[backend].module)
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
    return [name for name in BACKENDS if unavailable_reason(name, device_type) is None]


# --- selection ----------------------------------------------------------------------------------


def resolve(op: str, backend: str | None, inputs: Inputs) -> Callable:
    """The function running ``op`` (a name of :data:`~swiftcuda.ops.schema.SCHEMAS`) on ``inputs``.

    Args:
        op: the op.
        backend: a backend's name, or None for the first of the device's preference that takes
            the call.
        inputs: the call's description (:func:`describe`).

    Raises:
        BackendUnavailableError: ``backend`` was named but cannot take the call, or none can.
    """
    device_type = inputs.device_type
    if backend is not None:
        if backend not in BACKENDS:
            raise BackendUnavailableError(f"there is no such backend {backend!r} (choose from {', '.join(BACKENDS)})")
        reasons = BACKENDS[backend].not_supported_reasons(op, inputs)
        if reasons:
            raise BackendUnavailableError(
                f"backend {backend!r} cannot run {op}: {'; '.join(reasons)} (backend=None picks one that can)"
            )
        return BACKENDS[backend].implementation(op)
    preference = PREFERENCE.get(device_type, ("reference",))
    unavailable: list[tuple[str, str]] = []  # (backend, why it cannot run here)
    refused: list[tuple[str, str]] = []  # (backend, why it cannot take these inputs)
    for name in preference:
        availability = unavailable_reason(name, device_type)
        if availability is not None:
            unavailable.append((name, availability))
            continue
        reasons = BACKENDS[name].input_reasons(op, inputs)
        if reasons:
            refused.extend((name, reason) for reason in reasons)
            continue
        if not torch.compiler.is_compiling():
            if unavailable and unavailable[0][0] == preference[0]:
                _warn_fallback(device_type, preference[0], name, unavailable[0][1])
            for skipped, reason in refused:
                _log_skip(op, skipped, reason, name)
        return BACKENDS[name].implementation(op)
    details = "; ".join(f"{name!r}: {reason}" for name, reason in unavailable + refused)
    raise BackendUnavailableError(f"no backend can run {op} on {device_type} tensors ({details})")


@functools.cache
def _warn_fallback(device_type: str, preferred: str, chosen: str, reason: str | None) -> None:
    """Log, once per process and case, that ops on ``device_type`` tensors run a slower backend."""
    logger.warning(
        "swiftcuda ops on %s tensors run the %r backend, not the faster %r: %s. `swiftcuda info` shows what was built.",
        device_type,
        chosen,
        preferred,
        reason,
    )


@functools.cache
def _log_skip(op: str, skipped: str, reason: str, chosen: str) -> None:
    """Log, once per process and case, that ``op`` passed over a backend that runs here but cannot
    take the call's inputs: INFO when another fused backend runs it, WARNING when the reference does."""
    level = logging.WARNING if chosen == "reference" else logging.INFO
    logger.log(level, "swiftcuda %s runs the %r backend: %r cannot take these inputs: %s", op, chosen, skipped, reason)
