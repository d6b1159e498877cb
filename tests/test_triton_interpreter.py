"""The test suite's interpreter shim (tests/triton_interpreter.py): on where it fits, and a kernel
that calls helpers in a loop, from two modules, over several launches, still computes the same."""

from __future__ import annotations

import inspect
import os
import textwrap

import pytest
import torch

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="Triton runs compiled here")


def test_the_shim_is_on_exactly_where_the_interpreter_is_the_expected_one():
    from triton.runtime import interpreter

    from tests.triton_interpreter import EXPECTED_HELPER_CALL, skip_repeated_patching

    applied = skip_repeated_patching()
    if not applied:
        source = textwrap.dedent(inspect.getsource(interpreter.InterpretedFunction.__call__))
        assert source != EXPECTED_HELPER_CALL, "the interpreter is the expected one, yet the shim is off"
    else:
        assert interpreter.InterpretedFunction.__call__.skips_repeated_patching


def test_helpers_called_in_a_loop_compute_the_same_over_several_launches(generator):
    """soft_aggregate (a helper per element block) and the family's top-k read (helpers from
    another module in its inner loop), each launched twice, against the reference."""
    from swiftcuda import ops

    probs = torch.rand(3, 5, 37, generator=generator)
    mem_key, mem_val, q_key = (torch.randn(*s, generator=generator) for s in [(2, 16, 70), (2, 8, 70), (2, 16, 23)])
    for _ in range(2):
        torch.testing.assert_close(
            ops.soft_aggregate(probs, backend="triton"), ops.soft_aggregate(probs, backend="reference")
        )
        options = {"affinity": "l2", "top_k": 5}
        torch.testing.assert_close(
            ops.memory_read(mem_key, mem_val, q_key, **options, backend="triton"),
            ops.memory_read(mem_key, mem_val, q_key, **options, backend="reference"),
            rtol=1e-4,
            atol=1e-5,
        )
