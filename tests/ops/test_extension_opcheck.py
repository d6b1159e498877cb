"""torch.library.opcheck on the extension's CPU ops, and their fake (meta) implementations.

opcheck runs each op through the schema, fake-tensor, autograd-registration and AOT-dispatch
checks, so torch.compile and CUDA graph capture can trace through the ops.
"""

from __future__ import annotations

import pytest
import torch

from swiftcuda.ops import extension

pytestmark = pytest.mark.skipif(
    not extension.status().loaded, reason=f"extension unavailable: {extension.status().error}"
)


def memory(batch=2, key_dim=16, value_dim=12, entries=37, pixels=23, dtype=torch.float32):
    draw = lambda *shape: torch.randn(*shape, dtype=dtype)  # noqa: E731
    return (
        draw(batch, key_dim, entries),
        draw(batch, value_dim, entries),
        draw(batch, key_dim, pixels),
        draw(batch, value_dim, pixels),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_opcheck_memory_read(dtype):
    mem_key, mem_val, q_key, q_val = memory(dtype=dtype)
    n_valid = torch.tensor([37, 5], dtype=torch.int32)
    torch.library.opcheck(torch.ops.swiftcuda.memory_read.default, (mem_key, mem_val, q_key, q_val, None))
    torch.library.opcheck(torch.ops.swiftcuda.memory_read.default, (mem_key, mem_val, q_key, q_val, n_valid))
    out = torch.empty(2, 24, 23, dtype=dtype)
    torch.library.opcheck(torch.ops.swiftcuda.memory_read.into, (mem_key, mem_val, q_key, q_val, n_valid, out))


def test_opcheck_memory_update():
    mem_key, mem_val, new_key, new_val = memory()
    torch.library.opcheck(torch.ops.swiftcuda.memory_update.default, (mem_key, mem_val, new_key, new_val, 0.2))
    key_buf, val_buf = torch.randn(2, 16, 60), torch.randn(2, 12, 60)
    n_valid = torch.tensor([10, 55], dtype=torch.int64)
    torch.library.opcheck(
        torch.ops.swiftcuda.memory_update_.default, (key_buf, val_buf, n_valid, new_key, new_val, 0.2)
    )


def test_opcheck_rsp():
    torch.library.opcheck(torch.ops.swiftcuda.rsp.default, (torch.rand(3, 32, 48), 16))


@pytest.mark.skipif(not extension.status().winograd, reason="this torch has no NNPACK")
def test_opcheck_conv3x3():
    x, weight, bias = torch.randn(2, 5, 13, 9), torch.randn(7, 5, 3, 3), torch.randn(7)
    torch.library.opcheck(torch.ops.swiftcuda.conv3x3.default, (x, weight, bias, False))
    torch.library.opcheck(torch.ops.swiftcuda.conv3x3.default, (x, weight, None, True))
    assert torch.ops.swiftcuda.conv3x3(x.to("meta"), weight.to("meta"), None).shape == (2, 7, 13, 9)


def test_fake_shapes_on_meta_tensors():
    mem_key, mem_val, q_key, q_val = [t.to("meta") for t in memory()]
    assert torch.ops.swiftcuda.memory_read(mem_key, mem_val, q_key, q_val, None).shape == (2, 24, 23)
    keys, values = torch.ops.swiftcuda.memory_update(mem_key, mem_val, q_key, q_val, 0.1)
    assert keys.shape == (2, 16, 37 + 3) and values.shape == (2, 12, 37 + 3)
    own, others = torch.ops.swiftcuda.rsp(torch.empty(2, 32, 64, device="meta"), 16)
    assert own.shape == others.shape == (2, 256, 2, 4)


def test_compiles_without_graph_breaks():
    mem_key, mem_val, q_key, q_val = memory()

    def read_then_update(mem_key, mem_val, q_key, q_val):
        read = torch.ops.swiftcuda.memory_read(mem_key, mem_val, q_key, q_val, None)
        keys, _ = torch.ops.swiftcuda.memory_update(mem_key, mem_val, q_key, q_val, 0.1)
        return read, keys

    compiled = torch.compile(read_then_update, fullgraph=True, backend="eager")
    expected = read_then_update(mem_key, mem_val, q_key, q_val)
    result = compiled(mem_key, mem_val, q_key, q_val)
    torch.testing.assert_close(result, expected)


def test_raw_ops_reject_bad_arguments():
    mem_key, mem_val, q_key, q_val = memory()
    with pytest.raises(RuntimeError, match="query shapes"):
        torch.ops.swiftcuda.memory_read(mem_key, mem_val, q_key[:, :8], q_val, None)
    with pytest.raises(RuntimeError, match="n_valid must be an int32 or int64"):
        torch.ops.swiftcuda.memory_read(mem_key, mem_val, q_key, q_val, torch.ones(2))
    with pytest.raises(RuntimeError, match="beta must be in"):
        torch.ops.swiftcuda.memory_update(mem_key, mem_val, q_key, q_val, 0.0)
    with pytest.raises(RuntimeError, match="multiples of the factor"):
        torch.ops.swiftcuda.rsp(torch.rand(2, 20, 32), 16)
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        torch.ops.swiftcuda.rsp(torch.ones(2, 16, 16, dtype=torch.int32), 16)
