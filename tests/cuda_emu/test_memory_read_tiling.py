"""The tensor-core memory read's tilings and copy paths, emulated (tools/cuda_emu) against the float64 spec.

kernels/cuda/memory_read.cu picks, per launch: the narrow tiling (Cv <= 128: 2 column warps x 64
channels, 64-entry tiles) or the wide one (Cv > 128: 4 column warps x 128 channels, 32-entry
tiles; a second block of channels past 512); per tensor, cp.async copies of 16, 8 or 4 bytes or
2-byte synchronous ones, from the alignment of its address and strides; and splits of the memory
axis sized from the capacity, of which those past the device-side valid length are empty (their
blocks exit at once, and the combine must skip them: the workspace is poisoned, so reading an
empty split's partial would give NaN). Each case below pins one of these choices at SwiftNet's
channel counts (R18: Ck 32, Cv 128; R50: Ck 128, Cv 512) with ragged sizes.
"""

from __future__ import annotations

import pytest
import torch

from tests.cuda_emu import checks
from tests.ops.test_memory_read import truth as read_spec
from tests.ops.tolerances import assert_close_to_truth, rounded_to

pytestmark = pytest.mark.cuda_emu

HALF = [torch.float16, torch.bfloat16]

# (batch, key_dim, value_dim, entries, pixels, valid lengths, multiprocessors)
TILING_CASES = {
    # R18 channels, narrow tiling; entries % 8 == 4 (8-byte copies, as the engine's 18004-entry buffer).
    "r18-narrow-8-byte": (2, 32, 128, 300, 70, [300, 201], 1),
    # R50 channels, wide tiling, odd pixels (2-byte query copies), 16-byte memory copies, splits.
    "r50-wide-16-byte-splits": (1, 128, 512, 400, 67, [390], 132),
    # Two wide blocks of channels (grid.y = 2), the second partly past Cv; 4-byte copies.
    "wide-two-channel-blocks": (1, 48, 520, 138, 64, [100], 1),
    # Odd entries: 2-byte synchronous copies of the memory; key dim not a multiple of 16.
    "odd-strides-scalar-copies": (2, 20, 40, 131, 65, [131, 64], 1),
    # Capacity far above the valid lengths: most splits are empty, one item has no entry at all.
    "mostly-empty-splits": (2, 32, 128, 2000, 70, [100, 0], 132),
}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", TILING_CASES.values(), ids=TILING_CASES.keys())
def test_memory_read_tilings(emu, case, dtype, generator):
    batch, key_dim, value_dim, entries, pixels, lengths, multiprocessors = case
    checks.check_memory_read(
        emu, generator, dtype, batch, key_dim, value_dim, entries, pixels, lengths, multiprocessors
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_memory_read_all_splits_empty(emu, dtype, generator):
    """Several splits and no valid entry anywhere: every read block exits, the combine writes zeros
    (float32: the SIMT kernel's early exit; float16: the tensor-core kernel's)."""
    checks.check_memory_read(emu, generator, dtype, 2, 16, 24, 1000, 70, [0, 0], 132, expect_splits=2)


def test_memory_read_simt_mostly_empty_splits(emu, generator):
    """float32 (SIMT kernel): most splits past the valid lengths, whose blocks exit unwritten."""
    checks.check_memory_read(emu, generator, torch.float32, 2, 32, 72, 2000, 70, [100, 300], 132, expect_splits=2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_memory_read_views_of_a_wider_buffer(emu, dtype, generator):
    """The engine reads views of one (O, C, frame + capacity) buffer: row strides that are not the
    entry count, and an address offset by one element (no copy wider than 2 bytes is aligned)."""
    batch, key_dim, value_dim, entries, pixels, width = 2, 32, 128, 150, 62, 201
    key_buf = torch.randn(batch, key_dim, width, generator=generator).to(dtype)
    val_buf = torch.randn(batch, value_dim, width, generator=generator).to(dtype)
    mem_key, mem_val = key_buf[:, :, 1 : 1 + entries], val_buf[:, :, 1 : 1 + entries]
    q_key = torch.randn(batch, key_dim, pixels, generator=generator).to(dtype)
    q_val = torch.randn(batch, value_dim, pixels, generator=generator).to(dtype)
    lengths = [150, 97]
    for b, length in enumerate(lengths):
        mem_key[b, :, length:] = float("nan")
        mem_val[b, :, length:] = float("nan")
    out, _ = emu.memory_read(
        mem_key, mem_val, q_key, q_val, torch.tensor(lengths, dtype=torch.int64), multiprocessors=132
    )
    lengths = torch.tensor(lengths)
    truth = read_spec(mem_key, mem_val, q_key, q_val, lengths)
    assert_close_to_truth(out, truth, read_spec(mem_key, mem_val, q_key, q_val, lengths, rounding=rounded_to(dtype)))
