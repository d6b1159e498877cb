"""Every CUDA kernel of kernels/cuda, run on the CPU by the emulator (tools/cuda_emu), against the float64 spec.

Ragged sizes (pixels not a multiple of the 64-pixel tile, key dims not a multiple of the mma's 16,
value dims over one value chunk), per-item valid lengths with NaN past them, empty memory, one split
and several (forced through the launcher's multiprocessors argument, which sizes the splits as on
such a GPU) with the combine kernel; every dtype (fp16 / bf16 reads go through the tensor-core
kernel); each case under three thread-schedule orders (``emu`` fixture). Outputs and workspaces
are poisoned before the launch.
"""

from __future__ import annotations

import pytest
import torch

from tests.cuda_emu import checks

pytestmark = pytest.mark.cuda_emu

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (batch, key_dim, value_dim, entries, pixels, valid lengths, multiprocessors, expected splits)
READ_CASES = {
    "splits": (2, 32, 24, 300, 93, [300, 77], 132, 2),
    "one-split-empty-item": (2, 20, 40, 200, 70, [0, 130], 1, 1),
    "two-chunks-no-lengths": (1, 8, 136, 90, 65, None, 1, 1),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", READ_CASES.values(), ids=READ_CASES.keys())
def test_memory_read(emu, case, dtype, generator):
    batch, key_dim, value_dim, entries, pixels, lengths, multiprocessors, splits = case
    checks.check_memory_read(
        emu,
        generator,
        dtype,
        batch,
        key_dim,
        value_dim,
        entries,
        pixels,
        lengths,
        multiprocessors,
        expect_splits=splits,
    )


# (key_dim, value_dim, capacity, per-item lengths, pixels, beta, multiprocessors, expected splits)
UPDATE_CASES = {
    "splits-and-capacity-overflow": (16, 8, 700, [300, 670], 131, 0.37, 132, 2),
    "one-split-empty-memory": (24, 12, 200, [0, 77], 93, 0.1, 1, 1),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", UPDATE_CASES.values(), ids=UPDATE_CASES.keys())
def test_memory_update(emu, case, dtype, generator):
    key_dim, value_dim, capacity, starts, pixels, beta, multiprocessors, splits = case
    checks.check_memory_update(
        emu, generator, dtype, key_dim, value_dim, capacity, starts, pixels, beta, multiprocessors, expect_splits=splits
    )


@pytest.mark.parametrize("multiprocessors", [1, 132], ids=["one-split", "splits"])
def test_memory_update_never_picks_a_nan_key(emu, multiprocessors, generator):
    """Issue 14 item 5: a NaN in a new pixel's key makes its best match NaN, which sorts last (the
    reference's amax and sort); CUDA's fmaxf used to drop the NaN and choose that pixel first."""
    checks.check_memory_update(
        emu, generator, torch.float32, 16, 8, 700, [40, 600], 100, 0.1, multiprocessors, nan_pixels=(3, 50, 99)
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rsp(emu, dtype, generator):
    checks.check_rsp(emu, generator, dtype, 3, 48, 80, 16)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_soft_aggregate(emu, dtype, generator):
    checks.check_soft_aggregate(emu, generator, dtype, 3, 17, 23)


@pytest.mark.parametrize("fibers", ["ucontext", "boost"])
def test_both_fiber_implementations(fibers, generator, seed):
    """The POSIX ucontext fallback and Boost.Context run the same kernels to the same results
    (the mma kernel's warp collectives, the 1024-thread select's barriers)."""
    from tests.cuda_emu import harness

    if fibers == "boost" and not harness.boost_context_available():
        pytest.skip("Boost.Context not installed (Debian: libboost-context-dev)")
    reason = harness.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    emu = harness.EmulatedKernels.load(harness.build(fibers=fibers), schedule="shuffle", seed=seed)
    assert emu.uses_boost == (fibers == "boost")
    checks.check_memory_read(emu, generator, torch.float16, 1, 32, 24, 150, 70, [140], 132)
    checks.check_memory_update(emu, generator, torch.float32, 16, 8, 300, [200, 90], 131, 0.37, 1)
