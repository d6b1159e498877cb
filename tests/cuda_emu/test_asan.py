"""The emulated kernels built with AddressSanitizer: no out-of-bounds access in any kernel.

Inputs are torch tensors (exact-size heap allocations), workspaces and dynamic shared memory are
allocated exactly, and __shared__ arrays are globals with redzones, so a read or write one element
past any of them is reported. Runs in a subprocess with libasan preloaded.
"""

from __future__ import annotations

import pytest

from tests.cuda_emu import harness

pytestmark = pytest.mark.cuda_emu


def test_every_kernel_under_address_sanitizer(seed):
    reason = harness.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    result = harness.run_asan_child(
        harness.build(sanitize=True), ["read", "update", "rsp", "aggregate", "family"], seed
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-6000:]}"
    assert "AddressSanitizer" not in result.stderr
