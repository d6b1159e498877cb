"""Fixtures of the emulated CUDA kernel tests: the library built once per session from the tree."""

from __future__ import annotations

import pytest

from tests.cuda_emu import harness

SCHEDULES = ["forward", "reverse", "shuffle"]


@pytest.fixture(scope="session")
def emu_library_path():
    """Path of the emulated kernels built from kernels/cuda and tools/cuda_emu (content-hash cached)."""
    reason = harness.unavailable_reason()
    if reason is not None:
        pytest.skip(f"CUDA emulator unavailable: {reason}")
    return harness.build()


@pytest.fixture(params=SCHEDULES)
def emu(request, emu_library_path, seed) -> harness.EmulatedKernels:
    """The emulated kernels under one thread-schedule order; the shuffle is drawn from the test's seed."""
    return harness.EmulatedKernels.load(emu_library_path, schedule=request.param, seed=seed)
