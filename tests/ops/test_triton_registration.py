"""The Triton ops as torch.library ops: opcheck, torch.compile(fullgraph=True) through the public
ops and the backend choice, availability.

On the CPU the ops run their kernels under TRITON_INTERPRET=1 through an opaque launch op (an
interpreted kernel cannot be traced), so compile and opcheck check the registration, the fake
(meta) implementations, the functionalisation of the mutating ops and the decomposition of each
``triton_op``; on a GPU the same tests trace the kernels themselves into the graph.
"""

from __future__ import annotations

import pytest
import torch
from torch.library import opcheck

from swiftcuda import ops
from swiftcuda.ops import backends
from swiftcuda.ops._triton_compat import interpreter_numpy_conflict
from swiftcuda.ops.schema import SCHEMAS, split_name

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _memory(device, generator, dtype=torch.float32):
    draw = lambda *s: torch.randn(*s, generator=generator).to(device, dtype)  # noqa: E731
    return draw(2, 16, 40), draw(2, 24, 40), draw(2, 16, 19), draw(2, 24, 19)


def _cases(device, generator):
    mem_key, mem_val, q_key, q_val = _memory(device, generator)
    n_valid = torch.tensor([33, 0], dtype=torch.int32, device=device)
    out = torch.empty(2, 48, 19, device=device)
    rand = lambda *s: torch.rand(*s, generator=generator).to(device)  # noqa: E731
    shrinkage, selection = rand(2, 40) + 0.5, rand(2, 16, 19)
    return {
        "memory_read": [(mem_key, mem_val, q_key, q_val, n_valid), (mem_key, mem_val, q_key, q_val, None)],
        "memory_read.into": [
            (mem_key, mem_val, q_key, q_val, n_valid, out),
            (mem_key, mem_val, q_key, q_val, None, out),
        ],
        "memory_read_family": [
            (mem_key, mem_val, q_key, q_val, n_valid),
            (mem_key, mem_val, q_key, None, n_valid, shrinkage, selection, "l2", None, None, True),
            (mem_key, mem_val, q_key, q_val, None, None, None, "dot", 0.2, 7, False),
            (mem_key, mem_val, q_key, None, n_valid, shrinkage, None, "l2", None, 5, True),
        ],
        "memory_update": [(mem_key, mem_val, q_key, q_val, 0.3), (mem_key, mem_val, q_key, q_val, 1.0)],
        "memory_update_": [(mem_key.clone(), mem_val.clone(), n_valid.clone(), q_key, q_val, 0.3)],
        "rsp": [(rand(3, 8, 12), 4)],
        "soft_aggregate": [(rand(3, 8, 12),)],
        "frame_variation": [(rand(3, 8, 12), rand(3, 8, 12), rand(2, 8, 12), rand(2, 8, 12), 0.2, 0.3)],
    }


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_opcheck(device, name, generator):
    from swiftcuda.ops import triton_backend  # noqa: F401  (registers the ops)

    op_name, overload = split_name(name)
    op = getattr(getattr(torch.ops.swiftcuda_triton, op_name), overload)
    for args in _cases(device, generator)[name]:
        opcheck(op, args)


def test_compile_fullgraph_through_every_op(device, generator):
    """One compiled function calls all six public ops on the Triton backend (Inductor, no graph
    break: the backend choice is traced too) and matches eager.

    The in-place update gets the engine's aliasing: the new pixels and the long-term memory are
    disjoint views of one buffer, and the read then covers both.
    """
    mem_key, mem_val, q_key, q_val = _memory(device, generator)
    pixels = q_key.shape[2]
    probs = torch.rand(2, 16, 24, generator=generator).to(device)
    frame = torch.rand(3, 16, 24, generator=generator).to(device)

    def engine_like(key_buf, val_buf, n_valid, q_key, q_val, probs, previous_probs, frame):
        read = ops.memory_read(key_buf, val_buf, q_key, q_val, n_valid=n_valid + pixels, backend="triton")
        keys, values = ops.memory_update(key_buf, val_buf, q_key, q_val, beta=0.25, backend="triton")
        ops.memory_update_(
            key_buf[:, :, pixels:],
            val_buf[:, :, pixels:],
            n_valid,
            key_buf[:, :, :pixels],
            val_buf[:, :, :pixels],
            beta=0.1,
            backend="triton",
        )
        after = ops.memory_read(key_buf, val_buf, q_key, q_val, n_valid=n_valid + pixels, backend="triton")
        own, others = ops.rsp(probs, factor=8, backend="triton")
        merged = ops.soft_aggregate(probs, backend="triton")
        counts = ops.frame_variation(
            frame, frame * 0.5, probs, previous_probs, frame_threshold=0.1, mask_threshold=0.2, backend="triton"
        )
        return read * 2, after, keys, values, own + others, merged, counts

    def arguments():
        return (
            mem_key.clone(),
            mem_val.clone(),
            torch.tensor([12, 5], dtype=torch.int32, device=device),
            q_key,
            q_val,
            probs,
            probs.flip(1),
            frame,
        )

    eager_args, compiled_args = arguments(), arguments()
    expected = engine_like(*eager_args)
    compiled = torch.compile(engine_like, fullgraph=True)
    got = compiled(*compiled_args)
    for mine, theirs in zip(got, expected):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6)
    for mine, theirs in zip(compiled_args[:3], eager_args[:3]):  # the in-place update's buffers
        assert torch.equal(mine, theirs)
    assert eager_args[2].tolist() == [14, 7]


def test_backend_availability():
    from swiftcuda.ops import _triton_launch, triton_backend

    assert triton_backend.unavailable_reason("mps") is not None
    assert (triton_backend.unavailable_reason("cuda") is None) == torch.cuda.is_available()
    if _triton_launch.INTERPRETED and interpreter_numpy_conflict() is not None:
        # Triton < 3.7 with NumPy >= 2.4: reported with its fix, never picked
        assert "numpy<2.4" in triton_backend.unavailable_reason("cpu")
        assert "triton" not in backends.available_backends("cpu")
    elif _triton_launch.INTERPRETED:
        assert triton_backend.unavailable_reason("cpu") is None
        assert "triton" in backends.available_backends("cpu")
    else:
        assert "TRITON_INTERPRET" in triton_backend.unavailable_reason("cpu")


@pytest.mark.parametrize(
    "triton_version, numpy_version, conflict",
    [
        ("3.6.0", "2.4.6", True),
        ("3.6.0", "2.4.0rc1", True),
        ("3.6.0", "2.3.5", False),
        ("3.7.0", "2.4.6", False),
        ("3.8.0", "2.5.0", False),
        ("3.10.1", "3.0.0", False),
    ],
)
def test_interpreter_numpy_conflict(triton_version, numpy_version, conflict):
    reason = interpreter_numpy_conflict(triton_version, numpy_version)
    assert (reason is not None) == conflict
    if conflict:
        assert triton_version in reason and numpy_version in reason and "numpy<2.4" in reason
