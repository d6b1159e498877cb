"""The CUDA kernels of the STM family's read (kernels/cuda/memory_read_family.cu), run by the CPU
emulator under every thread schedule (``emu`` fixture), against the float64 truth.

Ragged sizes (pixels not a multiple of the 64-query tile, entries not a multiple of the 64-entry
tile, value channels over one 64-channel chunk), per-item valid lengths with NaN past them (one
item with a single entry), one split and several (sized through the launcher's multiprocessors
argument, as on such a GPU), every affinity variant, the top-k and the full softmax, the readout
alone and with the query values, usage, every dtype. Outputs, usage and workspaces are poisoned
before the launch.
"""

from __future__ import annotations

import pytest
import torch

from tests.ops.family_checks import check_family_read
from tests.ops.test_memory_read_family import VARIANTS

pytestmark = pytest.mark.cuda_emu

DOT, L2, L2_SEL, L2_SHRINK, L2_SEL_SHRINK = VARIANTS


def emu_runner(emu, multiprocessors: int, expect_splits: bool | None = None):
    def run(inputs, n_valid, options):
        out, usage, splits = emu.memory_read_family(
            inputs["mem_key"],
            inputs["mem_val"],
            inputs["q_key"],
            inputs["q_val"],
            n_valid.to(torch.int64),
            selection=inputs["selection"],
            shrinkage=inputs["shrinkage"],
            return_usage=True,
            multiprocessors=multiprocessors,
            **options,
        )
        if expect_splits is not None:
            assert (splits > 1) == expect_splits, f"the launcher chose {splits} splits"
        return out, usage

    return run


# (shape (B, Ck, Cv, N, P), variant, top_k, with q_val, multiprocessors, several splits expected)
CASES = {
    "topk-splits": ((2, 24, 70, 601, 70), L2_SEL_SHRINK, 7, False, 132, True),
    "topk-one-split-fewer-valid-than-k": ((2, 20, 24, 150, 37), DOT, 30, True, 1, False),
    "topk-l2-shrink": ((2, 24, 20, 301, 37), L2_SHRINK, 1, True, 132, True),
    "full-splits": ((2, 24, 70, 601, 70), L2_SHRINK, None, True, 132, True),
    "full-one-split": ((2, 20, 24, 150, 37), L2_SEL, None, False, 1, False),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_float32(emu, case, generator):
    shape, variant, top_k, with_q_val, multiprocessors, splits = case
    check_family_read(
        emu_runner(emu, multiprocessors, splits), shape, torch.float32, variant, top_k, generator, with_q_val=with_q_val
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("top_k", [None, 7], ids=str)
def test_half_precision(emu, dtype, top_k, generator):
    check_family_read(
        emu_runner(emu, 132), (2, 24, 20, 301, 37), dtype, L2_SEL_SHRINK, top_k, generator, with_q_val=top_k is None
    )


def test_xmem_like_channels(emu, generator):
    """XMem's key and value widths (64 / 512), top-30 with selection, shrinkage and usage, explicit scale."""
    check_family_read(
        emu_runner(emu, 132),
        (1, 64, 512, 300, 21),
        torch.float32,
        L2_SEL_SHRINK,
        30,
        generator,
        with_q_val=False,
        scale=0.125,
    )
