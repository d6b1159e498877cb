"""The emulated-kernel tests can fail: each known kind of GPU bug, planted in a copy of the sources,
is caught by the same checks the other tests run.

Every edit searches an exact pattern and fails loudly when the pattern is gone (update the pattern
together with the kernel it points at).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.cuda_emu import checks, harness

pytestmark = pytest.mark.cuda_emu


def planted(tmp_path: Path, file: str, pattern: str, replacement: str) -> tuple[Path, Path]:
    """Copies kernels/cuda and tools/cuda_emu under tmp_path with `pattern` replaced once in `file`.

    ``file`` is ``kernels/<name>`` or ``emu/<name>`` (the emulator, tools/cuda_emu). Returns the (kernel_dir, emu_dir) of the copy.
    """
    kernel_dir, emu_dir = tmp_path / "kernels", tmp_path / "emu"
    shutil.copytree(harness.KERNEL_DIR, kernel_dir)
    shutil.copytree(harness.EMU_DIR, emu_dir)
    target = tmp_path / file
    text = target.read_text()
    count = text.count(pattern)
    assert count == 1, f"the can-fail edit's pattern occurs {count} times in {file} (expected once): {pattern!r}"
    target.write_text(text.replace(pattern, replacement))
    return kernel_dir, emu_dir


@pytest.fixture
def skip_without_emulator():
    reason = harness.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def assert_caught(emu: harness.EmulatedKernels, check) -> None:
    with pytest.raises((AssertionError, harness.EmulationError)):
        check(emu)


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
def test_a_missing_syncthreads_is_caught(tmp_path, skip_without_emulator, schedule):
    # best_match: the memory-key tile must be complete before its column norms are computed.
    dirs = planted(
        tmp_path,
        "kernels/memory_update.cu",
        "    __syncthreads();\n    tile_inverse_norms(ks, key_dim, inverse_mem);",
        "    tile_inverse_norms(ks, key_dim, inverse_mem);",
    )
    emu = harness.EmulatedKernels.load(harness.build(*dirs), schedule=schedule)
    generator = torch.Generator().manual_seed(0)
    assert_caught(
        emu, lambda e: checks.check_memory_update(e, generator, torch.float32, 16, 8, 300, [200, 90], 131, 0.37, 1)
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_an_off_by_one_mma_fragment_index_is_caught(tmp_path, skip_without_emulator, dtype):
    # The emulated mma's C/D fragment: column 2t + (e & 1) shifted by one.
    dirs = planted(
        tmp_path,
        "emu/runtime.cpp",
        "const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);",
        "const int row = g + 8 * (e >> 1), col = (2 * t + (e & 1) + 1) % 8;",
    )
    emu = harness.EmulatedKernels.load(harness.build(*dirs))
    generator = torch.Generator().manual_seed(0)
    assert_caught(emu, lambda e: checks.check_memory_read(e, generator, dtype, 1, 32, 16, 100, 70, [90], 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_an_off_by_one_fragment_row_in_the_read_kernel_is_caught(tmp_path, skip_without_emulator, dtype):
    # read_mma_kernel: the softmax weights of accumulator row g stored into row g + 1 of P.
    dirs = planted(
        tmp_path,
        "kernels/memory_read.cu",
        "uint16_t* p_row = ps + (row0 + g) * kLd",
        "uint16_t* p_row = ps + (row0 + g + 1) * kLd",
    )
    emu = harness.EmulatedKernels.load(harness.build(*dirs))
    generator = torch.Generator().manual_seed(0)
    assert_caught(emu, lambda e: checks.check_memory_read(e, generator, dtype, 1, 32, 16, 100, 70, [90], 1))


def test_dropping_nan_in_best_match_is_caught(tmp_path, skip_without_emulator):
    # The issue-14 NaN bug back: fmaxf drops a NaN similarity, so a NaN key looks most novel.
    dirs = planted(tmp_path, "kernels/memory_update.cu", "best[j] = nan_max(best[j], ", "best[j] = fmaxf(best[j], ")
    emu = harness.EmulatedKernels.load(harness.build(*dirs))
    generator = torch.Generator().manual_seed(0)
    assert_caught(
        emu,
        lambda e: checks.check_memory_update(
            e, generator, torch.float32, 16, 8, 300, [40], 100, 0.1, 1, nan_pixels=(3, 50, 99)
        ),
    )


def test_an_out_of_bounds_read_is_caught_by_address_sanitizer(tmp_path, skip_without_emulator, seed):
    # soft_aggregate's grid-stride loop one pixel too far: reads past the last object's plane.
    dirs = planted(tmp_path, "kernels/soft_aggregate.cu", "x < p.pixels;", "x <= p.pixels;")
    result = harness.run_asan_child(harness.build(*dirs, sanitize=True), ["aggregate"], seed)
    assert result.returncode != 0 and "AddressSanitizer" in result.stderr, (
        f"exit {result.returncode}; ASan should have reported the overflow\n{result.stderr[-3000:]}"
    )
    assert "heap-buffer-overflow" in result.stderr
