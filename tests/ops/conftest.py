"""Fixtures shared by the op tests: one parametrised ``backend`` for every implementation.

Each op test runs once per backend and device that can run here; the others are skipped with the
reason, so the same tests check the CUDA kernels whenever a GPU is present.
"""

from __future__ import annotations

import pytest
import torch

from swiftcuda.ops import backends

#: (backend, device type) pairs every op test runs on.
BACKEND_DEVICES = [
    ("reference", "cpu"),
    ("reference", "cuda"),
    ("triton", "cuda"),
    ("triton", "cpu"),  # under TRITON_INTERPRET=1
    ("cpu", "cpu"),
    ("cuda", "cuda"),
]


def _backend_param(name: str, device_type: str):
    return pytest.param((name, torch.device(device_type)), id=f"{name}-{device_type}")


@pytest.fixture(params=[_backend_param(*pair) for pair in BACKEND_DEVICES])
def backend_device(request) -> tuple[str, torch.device]:
    """(backend name, device) for one implementation, skipped when it cannot run here."""
    name, device = request.param
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    reason = backends.unavailable_reason(name, device.type)
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable on {device.type}: {reason}")
    return name, device


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> torch.device:
    """A device the Triton backend runs on (the CPU under the interpreter), for Triton-only tests."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    reason = backends.unavailable_reason("triton", request.param)
    if reason is not None:
        pytest.skip(f"triton backend unavailable: {reason}")
    return torch.device(request.param)
