"""Each op's schema is declared once (swiftcuda.ops.schema): the C++ extension's, the Triton ops'
and the reference functions' signatures are held equal to it, and the CUDA limits in the backend
table to the kernels' constants, so none can drift."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

from swiftcuda.ops import backends, extension, reference
from swiftcuda.ops.schema import SCHEMAS, full_schema, mutated_arguments, split_name

ROOT = Path(__file__).resolve().parents[2]


def _registered(namespace: str, op: str):
    name, overload = split_name(op)
    return getattr(getattr(getattr(torch.ops, namespace), name), overload)


def _compiled_ops(backend: str) -> list[str]:
    """The ops that ``backend`` runs through its registered ops (not a borrowed function)."""
    return [op for op, kernel in backends.BACKENDS[backend].kernels.items() if kernel.function is None]


@pytest.mark.skipif(not extension.status().loaded, reason=f"extension unavailable: {extension.status().error}")
@pytest.mark.parametrize("op", _compiled_ops("cpu"))
def test_extension_schemas_are_the_declared_ones(op):
    assert str(_registered("swiftcuda", op)._schema) == f"swiftcuda::{full_schema(op)}"


def test_the_extension_backends_run_their_registered_ops_or_the_reference():
    for name in ("cpu", "cuda"):
        borrowed = {op for op in backends.BACKENDS[name].kernels if op not in _compiled_ops(name)}
        assert borrowed == {"frame_variation"}
        assert backends.BACKENDS[name].implementation("frame_variation") is reference.frame_variation


@pytest.mark.parametrize("op", list(SCHEMAS))
def test_triton_schemas_are_the_declared_ones(op):
    pytest.importorskip("triton")
    from swiftcuda.ops import triton_backend  # noqa: F401  (registers the ops)

    assert str(_registered("swiftcuda_triton", op)._schema) == f"swiftcuda_triton::{full_schema(op)}"


@pytest.mark.parametrize("op", list(SCHEMAS))
def test_reference_functions_take_the_schema_arguments_in_order(op):
    declared = [argument.name for argument in torch._C.parse_schema(full_schema(op)).arguments]
    parameters = list(inspect.signature(getattr(reference, split_name(op)[0])).parameters.values())
    assert [p.name for p in parameters[: len(declared)]] == declared
    # Anything after them is optional (the read's ``out``, which serves memory_read.into).
    assert all(p.default is not inspect.Parameter.empty for p in parameters[len(declared) :])


def test_mutated_arguments_come_from_the_schema():
    assert mutated_arguments("memory_read.into") == ("out",)
    assert mutated_arguments("memory_update_") == ("key_buf", "val_buf", "n_valid")
    assert mutated_arguments("memory_read") == ()


def test_every_backend_kernel_is_a_declared_op():
    for backend in backends.BACKENDS.values():
        assert set(backend.kernels) <= set(SCHEMAS), backend.name
    assert set(backends.BACKENDS["reference"].kernels) == set(SCHEMAS)


@pytest.mark.parametrize(
    "header, constant, declared",
    [
        ("memory_read.cuh", "kMaxReadKeyDim", backends.CUDA_MAX_READ_KEY_DIM),
        ("memory_update.cuh", "kMaxUpdateKeyDim", backends.CUDA_MAX_UPDATE_KEY_DIM),
    ],
)
def test_cuda_key_dim_limits_are_the_kernels(header, constant, declared):
    text = (ROOT / "kernels" / "cuda" / header).read_text()
    found = re.search(rf"constexpr int64_t {constant} = (\d+);", text)
    assert found is not None, f"{constant} not found in kernels/cuda/{header}"
    assert int(found.group(1)) == declared
