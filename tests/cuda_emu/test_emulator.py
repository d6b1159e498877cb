"""The emulator itself (tools/cuda_emu): each device feature against its CUDA / PTX definition, and the
errors it must report instead of running undefined behaviour (tools/cuda_emu/selftest.cu's kernels)."""

from __future__ import annotations

import ctypes

import pytest
import torch

pytestmark = pytest.mark.cuda_emu


def _ptr(tensor: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr())


def test_shuffles_ballot_popc_atomics_and_shared(emu):
    threads = 64
    out = torch.full((2 * threads * 8,), -99, dtype=torch.int32)
    assert emu.library.swiftcuda_emu_selftest_collectives(_ptr(out), threads) == 0
    for block in range(2):
        rows = out.view(2, threads, 8)[block]
        for tid in range(threads):
            lane, row = tid % 32, rows[tid].tolist()
            seg8, seg16 = lane & ~7, lane & ~15
            ballot = sum(1 << i for i in range(32) if i % 3 == 0)
            expected = [
                (lane ^ 5) * 10,
                (seg8 + 3) * 10,
                (lane - 2 if lane - 2 >= seg16 else lane) * 10,
                (lane + 3 if lane + 3 < 32 else lane) * 10,
                ballot - (1 << 32) if ballot >= 1 << 31 else ballot,  # as int32
                bin(ballot).count("1"),
                lane ^ 1 if lane < 16 else -1,
                sum(t % 32 for t in range(threads)),
            ]
            assert row == expected, f"block {block} thread {tid}"


def test_mma_m16n8k16_matches_a_matrix_product(emu):
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(16, 16, generator=generator).half()
    b = torch.randn(16, 8, generator=generator).half()
    d = torch.full((16, 8), float("nan"))
    assert emu.library.swiftcuda_emu_selftest_mma(_ptr(a), _ptr(b), _ptr(d)) == 0
    c = torch.tensor([[1.0, 2.0] * 4] * 8 + [[3.0, 4.0] * 4] * 8)  # the accumulator each lane started with
    torch.testing.assert_close(d.double(), a.double() @ b.double() + c.double(), rtol=1e-6, atol=1e-5)


def test_ldmatrix_x4_plain_and_transposed(emu):
    values = torch.randint(0, 2**16, (4, 8, 8), dtype=torch.int32)  # four 8x8 matrices of 16-bit values
    packed = (values.view(-1) - (values.view(-1) >= 2**15).int() * 2**16).to(torch.int16)
    out = torch.zeros(32 * 8, dtype=torch.int32)
    assert emu.library.swiftcuda_emu_selftest_ldmatrix(_ptr(packed), _ptr(out)) == 0
    got = [v & 0xFFFFFFFF for v in out.tolist()]
    for lane in range(32):
        row, col = lane // 4, 2 * (lane % 4)
        for i in range(4):
            m = values[i].tolist()
            assert got[lane * 8 + i] == m[row][col] | (m[row][col + 1] << 16), f"lane {lane} matrix {i}"
            assert got[lane * 8 + 4 + i] == m[col][row] | (m[col + 1][row] << 16), f"lane {lane} matrix {i}, .trans"


@pytest.mark.parametrize(
    "which, message",
    [
        (0, "not in its mask"),
        (1, "has exited"),
        (2, "deadlock"),
        (3, "__trap"),
        (4, "outside the mask"),
    ],
)
def test_misuse_is_reported(emu, which, message):
    out = torch.zeros(64, dtype=torch.int32)
    code = emu.library.swiftcuda_emu_selftest_misuse(which, _ptr(out))
    assert code != 0, "the emulator ran undefined behaviour without an error"
    emu.library.swiftcuda_emu_last_message.restype = ctypes.c_char_p
    text = emu.library.swiftcuda_emu_last_message().decode()
    emu.library.swiftcuda_emu_clear_error()
    assert message in text, text


def test_more_than_48k_of_dynamic_shared_memory_needs_the_opt_in(emu):
    """As on a GPU, a launch over 48 KiB of dynamic shared memory fails unless cudaFuncSetAttribute
    raised the kernel's limit: a launcher that forgets the attribute is caught here."""
    out = torch.zeros(32)
    assert emu.library.swiftcuda_emu_selftest_shared_limit(0, _ptr(out)) != 0
    emu.library.swiftcuda_emu_clear_error()
    assert emu.library.swiftcuda_emu_selftest_shared_limit(1, _ptr(out)) == 0
    assert (out == 42.0).all()
