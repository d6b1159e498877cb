"""``EngineOptions``: every option of the engine, in one typed, validated, immutable object.

The command line turns its arguments into one :class:`EngineOptions`; everything below it (the
builders of :mod:`swiftcuda.engine`, the Ray workers, the benchmarks) takes that object. It is
plain data (picklable, comparable), so it travels to worker processes as it is.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

from swiftcuda.errors import InputError
from swiftcuda.inference.rescale import AUTO, InternalSize, check_request
from swiftcuda.inference.trigger import PamOptions
from swiftcuda.model.config import CONFIGS
from swiftcuda.ops.backends import BACKENDS
from swiftcuda.optimize import PrepareOptions
from swiftcuda.precision import PRECISIONS

__all__ = ["MEMORY_SCHEDULES", "RUNTIMES", "EngineOptions"]

#: Memory schedules: the released evaluation's every-``mem_every``-frames, or the PAM trigger.
MEMORY_SCHEDULES = ("official", "pam")
#: Where the step runs: the torch engine, or the step exported to ONNX on ONNX Runtime.
RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class EngineOptions:
    """How to load, prepare and run the engine.

    Example::

        options = EngineOptions(weights="swiftnet_resnet18_old.pth", memory="pam", tune=False)
        segmenter = swiftcuda.build_segmenter(options)

    Attributes:
        weights: checkpoint path (official or swiftcuda), or "demo" for the weights shipped with
            the package; None: the demo weights, announced as such (see
            :func:`swiftcuda.engine.resolve_weights`).
        variant: backbone of the checkpoint, "r18" or "r50".
        device: "cpu", "cuda" or "cuda:N" (a torch.device is taken by its name); None: cuda when
            a GPU is available, else cpu.
        precision: "fp32", "fp16", "bf16", or "auto" (what the device runs fastest:
            :func:`swiftcuda.precision.resolve_precision`).
        memory: "official" (update every ``mem_every`` frames) or "pam" (variation-aware trigger).
        mem_every: update period of the official schedule.
        beta: fraction of a frame's pixels that a memory update appends, in (0, 1].
        capacity: long-term memory entries per object; None for the engine's default for the
            frame size.
        pam: thresholds of the "pam" trigger; None for the defaults.
        backend: op backend ("reference", "triton", "cuda", "cpu"); None for the best available.
        internal_size: the size the engine runs at: "auto" (the weights' recommended size within
            what the device runs well), None (the input's), an int (the shorter side) or (H, W).
        cuda_graphs: capture the steady-state step as CUDA graphs; None: on a GPU.
        device_decisions: decide PAM updates on the device; None: on a GPU.
        compile: compile the convolutions with TorchInductor (model preparation).
        winograd: Winograd 3x3 convolutions; None: the default (float32 on a CPU, where the
            extension supports it), False: direct convolutions as the official code.
        tune: on a CPU, run each convolution with the algorithm measured fastest here.
        pointwise: fuse ReLUs and residual adds into oneDNN convolutions; None: on a CPU in 16 bits.
        runtime: "torch" (the engine) or "onnx" (the step exported to ONNX, run on ONNX Runtime;
            fp32 or fp16; the backend and the model preparation options are torch's).

    Raises:
        InputError (a ValueError): a field out of its range, named in the message.
    """

    weights: str | None = None
    variant: str = "r18"
    device: str | None = None
    precision: str = "auto"
    memory: str = "official"
    mem_every: int = 5
    beta: float = 0.1
    capacity: int | None = None
    pam: PamOptions | None = None
    backend: str | None = None
    internal_size: InternalSize = AUTO
    cuda_graphs: bool | None = None
    device_decisions: bool | None = None
    compile: bool = False
    winograd: bool | None = None
    tune: bool = True
    pointwise: bool | None = None
    runtime: str = "torch"

    def __post_init__(self) -> None:
        if isinstance(self.weights, os.PathLike):
            object.__setattr__(self, "weights", os.fspath(self.weights))
        if isinstance(self.device, torch.device):
            object.__setattr__(self, "device", str(self.device))
        if self.weights is not None and not isinstance(self.weights, str):
            raise InputError(f"weights must be a checkpoint path, 'demo' or None, not {self.weights!r}")
        _choice("variant", self.variant, tuple(CONFIGS))
        _check_device(self.device)
        _choice("precision", self.precision, ("auto", *PRECISIONS))
        _choice("memory", self.memory, MEMORY_SCHEDULES)
        _positive_int("mem_every", self.mem_every)
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not 0.0 < self.beta <= 1.0:
            raise InputError(f"beta must be a fraction in (0, 1], not {self.beta!r}")
        if self.capacity is not None:
            _positive_int("capacity", self.capacity)
        if self.pam is not None and not isinstance(self.pam, PamOptions):
            raise InputError(f"pam must be a PamOptions or None, not {self.pam!r}")
        if self.backend is not None:
            _choice("backend", self.backend, tuple(BACKENDS))
        size = check_request(self.internal_size)  # its message names the internal size
        if isinstance(size, tuple) and size != self.internal_size:
            object.__setattr__(self, "internal_size", size)  # [H, W] as (H, W): comparable, hashable
        for name in ("compile", "tune"):
            _flag(name, getattr(self, name), none=False)
        for name in ("cuda_graphs", "device_decisions", "winograd", "pointwise"):
            _flag(name, getattr(self, name), none=True)
        _choice("runtime", self.runtime, RUNTIMES)

    def replace(self, **changes) -> EngineOptions:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def prepare_options(self) -> PrepareOptions:
        """The model preparation these options ask for (:func:`swiftcuda.optimize.prepare`)."""
        return PrepareOptions(compile=self.compile, winograd=self.winograd, tune=self.tune, pointwise=self.pointwise)

    def stream_options(self, device: torch.device) -> dict:
        """The streaming options of a :class:`~swiftcuda.inference.Segmenter` on ``device``
        (CUDA graphs on a GPU unless set)."""
        cuda_graphs = device.type == "cuda" if self.cuda_graphs is None else self.cuda_graphs
        return dict(
            memory=self.memory,
            mem_every=self.mem_every,
            beta=self.beta,
            capacity=self.capacity,
            pam=self.pam,
            backend=self.backend,
            cuda_graphs=cuda_graphs,
            device_decisions=self.device_decisions,
            internal_size=self.internal_size,
        )


def _choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, not {value!r}")


def _flag(name: str, value, none: bool) -> None:
    if not (isinstance(value, bool) or (none and value is None)):
        raise InputError(f"{name} must be True{', False or None' if none else ' or False'}, not {value!r}")


def _check_device(device) -> None:
    """A device name torch parses, of a type the engine runs on (whether it is present here is
    checked when the model is loaded: the options may describe workers on other machines)."""
    if device is None:
        return
    if not isinstance(device, str):
        raise InputError(f"device must be a name such as 'cpu' or 'cuda', not {device!r}")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"unknown device {device!r}: use 'cpu' or 'cuda' ({error})") from None
    if parsed.type not in ("cpu", "cuda"):
        raise InputError(f"device {parsed.type!r} is not supported: use 'cpu' or 'cuda'")
