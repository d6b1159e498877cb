"""Fixtures of the emulated CUDA kernel tests: the library built once per session from the tree."""

from __future__ import annotations

import pytest
import torch

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
def emu(request, emu_library_path) -> harness.EmulatedKernels:
    """The emulated kernels under one thread-schedule order (a fresh shuffle seed each test)."""
    import random

    return harness.EmulatedKernels.load(emu_library_path, schedule=request.param, seed=random.getrandbits(63))


@pytest.fixture
def generator() -> torch.Generator:
    """A freshly seeded generator: every run draws new inputs, and the seed is printed on failure."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    print(f"random seed: {seed}")
    return torch.Generator().manual_seed(seed)
