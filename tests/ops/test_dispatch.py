"""The backend table's choice: each backend states which inputs it takes; ``backend=None`` runs the
first of the device's preference that takes them and logs why it passed over the others (each op,
backend and reason once); a named backend that cannot take them is one clear error."""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace

import pytest
import torch

from swiftcuda import ops
from swiftcuda.errors import BackendUnavailableError
from swiftcuda.ops import backends, reference
from swiftcuda.ops.backends import ANY, EVERY_OPTION, Inputs, Kernel


@pytest.fixture(autouse=True)
def fresh_logs():
    """Each test sees the once-per-case log records afresh."""
    backends._log_skip.cache_clear()
    backends._warn_fallback.cache_clear()
    yield
    backends._log_skip.cache_clear()
    backends._warn_fallback.cache_clear()


def cuda_inputs(key_dim: int, **options) -> Inputs:
    """A CUDA call's description, from a stand-in for a CUDA tensor (no GPU needed)."""
    like_cuda = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16)
    return backends.describe(like_cuda, {"key_dim": key_dim, "value_dim": 512}, **options)


@pytest.fixture
def simulated_gpu(monkeypatch):
    """Every backend runs on "cuda" tensors here (as on a GPU machine with the extension built);
    ``resolve`` hands back a marker naming the backend and op instead of a kernel."""
    monkeypatch.setattr(backends, "unavailable_reason", lambda backend, device_type: None)
    monkeypatch.setattr(backends.Backend, "implementation", lambda self, op: (self.name, op))


# --- what a kernel takes --------------------------------------------------------------------------


def test_kernel_reasons_name_each_input_it_refuses():
    kernel = Kernel(
        dtypes=frozenset({torch.float16}),
        sizes={"key_dim": (1, 128), "top_k": (1, 32)},
        options={"n_valid": ANY, "affinity": {"l2"}},
    )
    inputs = Inputs("cuda", torch.float16, {"key_dim": 64, "top_k": 8}, {"n_valid": True, "affinity": "l2"})
    assert kernel.not_supported_reasons(inputs) == []
    refused = Inputs("cuda", torch.float32, {"key_dim": 160, "top_k": 8}, {"affinity": "cosine", "selection": True})
    assert kernel.not_supported_reasons(refused) == [
        "it does not take torch.float32 tensors",
        "it takes key_dim from 1 to 128, not 160",
        "it does not take affinity='cosine'",
        "it does not take selection",
    ]


def test_a_size_the_call_does_not_describe_is_not_limited():
    assert Kernel(sizes={"top_k": (1, 32)}).not_supported_reasons(Inputs("cpu", torch.float32, {"key_dim": 999})) == []


def test_the_reference_takes_every_option_and_a_check_adds_reasons():
    inputs = Inputs("cpu", torch.float64, {}, {"top_k": 30, "affinity": "l2"})
    assert backends.BACKENDS["reference"].input_reasons("memory_read", inputs) == []
    assert Kernel(options=EVERY_OPTION).not_supported_reasons(inputs) == ["it does not take torch.float64 tensors"]
    strict = Kernel(
        options=EVERY_OPTION, dtypes=frozenset({torch.float64}), check=lambda i: [f"not with {i.device_type}"]
    )
    assert strict.not_supported_reasons(inputs) == ["not with cpu"]


def test_describe_keeps_the_given_options_and_never_a_tensor():
    tensor = torch.randn(2, 3, 4)
    inputs = backends.describe(tensor, {"key_dim": 3}, n_valid=torch.tensor([1, 2]), top_k=None, usage=False, scale=0.5)
    assert inputs == Inputs("cpu", torch.float32, {"key_dim": 3}, {"n_valid": True, "scale": 0.5})


def test_an_op_a_backend_lacks_is_a_reason():
    backend = dataclasses.replace(backends.BACKENDS["cpu"], kernels={})
    assert backend.input_reasons("rsp", Inputs("cpu", torch.float32)) == ["it has no rsp kernel"]


# --- the choice on a GPU ------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["memory_read", "memory_read.into", "memory_update", "memory_update_"])
def test_key_dim_160_on_cuda_runs_triton_with_one_log_line(simulated_gpu, caplog, op):
    with caplog.at_level(logging.DEBUG, logger="swiftcuda"):
        for _ in range(3):
            assert backends.resolve(op, None, cuda_inputs(160)) == ("triton", op)
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    record = caplog.records[0]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert op in message and "'cuda'" in message and "'triton'" in message
    assert "key_dim from 1 to 128, not 160" in message


def test_key_dim_128_on_cuda_runs_the_cuda_kernels_silently(simulated_gpu, caplog):
    with caplog.at_level(logging.DEBUG, logger="swiftcuda"):
        assert backends.resolve("memory_read", None, cuda_inputs(128, n_valid=True)) == ("cuda", "memory_read")
    assert caplog.records == []


def test_each_reason_is_logged_once(simulated_gpu, caplog):
    with caplog.at_level(logging.INFO, logger="swiftcuda"):
        for key_dim in (160, 256, 160, 256):
            backends.resolve("memory_read", None, cuda_inputs(key_dim))
    assert ["not 160" in r.getMessage() for r in caplog.records] == [True, False]


def test_naming_a_backend_that_cannot_take_the_inputs_is_one_clear_error(simulated_gpu):
    with pytest.raises(BackendUnavailableError) as raised:
        backends.resolve("memory_read", "cuda", cuda_inputs(160))
    message = str(raised.value)
    assert "\n" not in message
    assert "'cuda'" in message and "memory_read" in message and "key_dim from 1 to 128, not 160" in message
    assert backends.resolve("memory_read", "triton", cuda_inputs(160)) == ("triton", "memory_read")


def test_when_no_backend_takes_the_inputs_the_error_gives_every_reason(simulated_gpu, monkeypatch):
    refuse = Kernel(sizes={"key_dim": (1, 64)})
    for name in backends.PREFERENCE["cuda"]:
        monkeypatch.setitem(
            backends.BACKENDS, name, dataclasses.replace(backends.BACKENDS[name], kernels={"rsp": refuse})
        )
    with pytest.raises(BackendUnavailableError, match="no backend can run rsp on cuda tensors") as raised:
        backends.resolve("rsp", None, cuda_inputs(160))
    assert str(raised.value).count("not 160") == 3


# --- availability and input limits together, on this machine's CPU --------------------------------


@pytest.fixture
def cpu_backend_up_to_128_keys(monkeypatch):
    """The "cpu" backend as if its read took key_dim up to 128 (as the CUDA kernels do)."""
    if backends.unavailable_reason("cpu", "cpu") is not None:
        pytest.skip(f"backend 'cpu' unavailable: {backends.unavailable_reason('cpu', 'cpu')}")
    cpu = backends.BACKENDS["cpu"]
    limited = dataclasses.replace(cpu.kernels["memory_read"], sizes={"key_dim": (1, 128)})
    monkeypatch.setitem(
        backends.BACKENDS, "cpu", dataclasses.replace(cpu, kernels={**cpu.kernels, "memory_read": limited})
    )


def test_the_public_op_falls_back_per_input_and_warns_when_the_reference_runs(cpu_backend_up_to_128_keys, caplog):
    generator = torch.Generator().manual_seed(3)
    mem_key, mem_val = torch.randn(2, 160, 37, generator=generator), torch.randn(2, 24, 37, generator=generator)
    q_key, q_val = torch.randn(2, 160, 11, generator=generator), torch.randn(2, 24, 11, generator=generator)
    with caplog.at_level(logging.INFO, logger="swiftcuda"):
        got = ops.memory_read(mem_key, mem_val, q_key, q_val)
        ops.memory_read(mem_key, mem_val, q_key, q_val)
    torch.testing.assert_close(got, reference.memory_read(mem_key, mem_val, q_key, q_val))
    assert [r.levelno for r in caplog.records] == [logging.WARNING]  # only the reference took it: slow
    assert "'cpu' cannot take these inputs" in caplog.records[0].getMessage()
    refused = "backend 'cpu' cannot run memory_read: it takes key_dim from 1 to 128, not 160"
    with pytest.raises(BackendUnavailableError, match=refused):
        ops.memory_read(mem_key, mem_val, q_key, q_val, backend="cpu")


def test_an_unavailable_backend_named_gives_its_reason(monkeypatch):
    monkeypatch.setattr(backends, "unavailable_reason", lambda backend, device_type: "the extension is not built")
    with pytest.raises(
        BackendUnavailableError, match="backend 'cpu' cannot run rsp: the extension is not built \\(backend=None"
    ):
        backends.resolve("rsp", "cpu", Inputs("cpu", torch.float32))


def test_unknown_backend():
    with pytest.raises(BackendUnavailableError, match="no such backend 'magic'"):
        backends.resolve("rsp", "magic", Inputs("cpu", torch.float32))


# --- tracing ------------------------------------------------------------------------------------


def test_the_choice_traces_into_one_graph():
    """torch.compile(fullgraph=True) goes through the public ops and the backend choice."""
    generator = torch.Generator().manual_seed(5)
    mem_key, mem_val = torch.randn(2, 16, 37, generator=generator), torch.randn(2, 24, 37, generator=generator)
    q_key, q_val = torch.randn(2, 16, 11, generator=generator), torch.randn(2, 24, 11, generator=generator)
    n_valid = torch.tensor([37, 5])
    probs = torch.rand(3, 16, 32, generator=generator)

    def step(mem_key, mem_val, q_key, q_val, n_valid, probs):
        read = ops.memory_read(mem_key, mem_val, q_key, q_val, n_valid=n_valid)
        own, others = ops.rsp(probs, factor=16)
        return read * 2, own + others, ops.soft_aggregate(probs)

    expected = step(mem_key, mem_val, q_key, q_val, n_valid, probs)
    got = torch.compile(step, fullgraph=True, backend="eager")(mem_key, mem_val, q_key, q_val, n_valid, probs)
    for mine, theirs in zip(got, expected):
        torch.testing.assert_close(mine, theirs)
