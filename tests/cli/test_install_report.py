"""An install without the compiled extension (or without its CUDA kernels) is reported loudly:
by the build, by ``swiftcuda info``, and once by the first op that falls back; and a backend that
cannot launch is never picked.

``SWIFTCUDA_NO_EXTENSION=1`` in the environment simulates such an install at run time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from swiftcuda.cli import info as info_cli
from swiftcuda.ops import _triton_compat, backends, reference

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}, **kwargs
    )


def test_info_reports_an_install_without_the_extension():
    run = _run([sys.executable, "-m", "swiftcuda", "info"], {"SWIFTCUDA_NO_EXTENSION": "1"})
    assert run.returncode == 0, run.stderr
    assert "not loaded: the extension swiftcuda._C is switched off (SWIFTCUDA_NO_EXTENSION=1" in run.stdout
    assert "WARNING: NO COMPILED KERNELS" in run.stdout
    # --require turns it into a failure with one line, for scripts (the GPU suite).
    for requirement in ("extension", "cuda"):
        run = _run(
            [sys.executable, "-m", "swiftcuda", "info", "--require", requirement], {"SWIFTCUDA_NO_EXTENSION": "1"}
        )
        assert run.returncode == 1
        lines = [line for line in run.stderr.splitlines() if line.startswith("swiftcuda info: ")]
        assert lines == [
            "swiftcuda info: the compiled extension swiftcuda._C is not loaded: the extension swiftcuda._C is "
            "switched off (SWIFTCUDA_NO_EXTENSION=1 in the environment)"
        ], run.stderr


def test_require_cuda_fails_without_cuda_kernels_and_passes_with_them():
    loaded = {"loaded": True, "error": None, "cuda_kernels": False}
    assert "no CUDA kernels" in info_cli.missing_requirement({"extension": loaded}, "cuda")
    assert info_cli.missing_requirement({"extension": loaded}, "extension") is None
    assert info_cli.missing_requirement({"extension": {**loaded, "cuda_kernels": True}}, "cuda") is None
    text = info_cli.format_text(
        {
            "versions": {"swiftcuda": "x", "python": "3", "torch": "2", "torch_cuda": None, "triton": None},
            "gpu": None,
            "cpu_threads": 1,
            "cpu": {"model": "m", "isa": "AVX2", "aten_capability": "AVX2", "native_bf16": False, "native_fp16": False},
            "auto_precision": {"cpu": "float32"},
            "backends": {},
            "extension": {
                **loaded,
                "path": "p",
                "built_against_torch": "2",
                "openmp": None,
                "winograd_conv3x3": False,
                "cuda_version": None,
                "cuda_archs": [],
                "ptx_archs": [],
            },
        }
    )
    assert "CUDA kernels: NOT COMPILED" in text


def test_first_op_that_falls_back_warns_once():
    script = textwrap.dedent(
        """
        import json, logging, torch
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append((record.levelname, record.getMessage()))
        logging.getLogger("swiftcuda").addHandler(Keep())
        logging.getLogger("swiftcuda").setLevel(logging.INFO)
        from swiftcuda import ops
        keys, values = torch.randn(1, 8, 30), torch.randn(1, 4, 30)
        for _ in range(3):
            ops.memory_read(keys, values, torch.randn(1, 8, 5), torch.randn(1, 4, 5))
            ops.rsp(torch.rand(2, 32, 32))
        print(json.dumps([m for level, m in records if level == "WARNING"]))
        """
    )
    run = _run([sys.executable, "-c", script], {"SWIFTCUDA_NO_EXTENSION": "1"})
    assert run.returncode == 0, run.stderr
    warnings = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(warnings) == 1, warnings
    assert "'reference' backend, not the faster 'cpu'" in warnings[0] and "SWIFTCUDA_NO_EXTENSION=1" in warnings[0]


def test_setup_refuses_a_build_without_torch_and_announces_an_install_without_extension(tmp_path):
    """setup.py stops an isolated build (torch not importable) with the fix, unless asked not to."""
    blocked = "import sys; sys.modules['torch'] = None; sys.argv = ['setup.py'] + sys.argv[1:]; "
    run_setup = blocked + "import runpy; runpy.run_path('setup.py', run_name='__main__')"
    build = ["build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "temp")]
    run = _run([sys.executable, "-c", run_setup, *build], cwd=ROOT)
    assert run.returncode != 0
    assert "torch is not importable" in run.stderr and "--no-build-isolation" in run.stderr
    assert "SWIFTCUDA_NO_EXTENSION=1" in run.stderr
    # Metadata alone needs no torch.
    run = _run([sys.executable, "-c", run_setup, "--name"], cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == "swiftcuda", run.stderr
    # Asked for: a loud notice, no failure (no extension: nothing is compiled).
    run = _run([sys.executable, "-c", run_setup, *build], {"SWIFTCUDA_NO_EXTENSION": "1"}, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "installing WITHOUT the compiled C++/CUDA kernels" in run.stderr


def test_pyproject_names_the_backend_so_editable_builds_see_torch():
    """Without [build-system], pip ran `setup.py develop`, which setuptools >= 80 runs as an
    isolated build without torch: no extension, no message."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'build-backend = "setuptools.build_meta"' in text
    assert '"setuptools>=70.1"' in text and "torch" not in text.split("requires")[1].split("]")[0]


@pytest.fixture
def fake_backend(monkeypatch):
    """Replace the "cpu" backend by one whose kernels cannot launch."""

    def soft_aggregate(probs):
        raise RuntimeError("wrap_triton only works on functions annotated with triton.jit or triton.autotune")

    def rsp(probs, factor=16):
        raise AssertionError("never picked")

    fake = dataclasses.replace(
        backends.BACKENDS["cpu"],
        module="swiftcuda.ops.reference",  # no static checks: only the probe can find the fault
        kernels={"soft_aggregate": backends.Kernel(function=soft_aggregate), "rsp": backends.Kernel(function=rsp)},
    )
    monkeypatch.setitem(backends.BACKENDS, "cpu", fake)
    backends.probe_failure.cache_clear()
    backends._warn_fallback.cache_clear()
    yield fake
    backends.probe_failure.cache_clear()
    backends._warn_fallback.cache_clear()


def test_a_backend_that_cannot_launch_is_never_picked(fake_backend, caplog):
    reason = backends.unavailable_reason("cpu", "cpu")
    assert reason is not None and "probe" in reason and "wrap_triton only works" in reason
    assert "cpu" not in backends.available_backends("cpu")
    with caplog.at_level(logging.WARNING, logger="swiftcuda"):
        probs = torch.rand(2, 32, 48)
        for _ in range(2):
            impl = backends.resolve("rsp", None, backends.describe(probs))
            own, others = impl(probs, 16)
    assert impl is reference.rsp
    torch.testing.assert_close(own, reference.rsp(probs, 16)[0])
    fallbacks = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(fallbacks) == 1 and "wrap_triton only works" in fallbacks[0].getMessage()


def test_a_backend_with_wrong_results_is_not_available(monkeypatch):
    wrong = backends.Kernel(function=lambda probs: reference.soft_aggregate(probs) * 1.01)
    fake = dataclasses.replace(
        backends.BACKENDS["cpu"], module="swiftcuda.ops.reference", kernels={"soft_aggregate": wrong}
    )
    monkeypatch.setitem(backends.BACKENDS, "cpu", fake)
    backends.probe_failure.cache_clear()
    try:
        assert "differ from the reference" in backends.unavailable_reason("cpu", "cpu")
    finally:
        backends.probe_failure.cache_clear()


def test_wrap_triton_compat_passes_interpreted_kernels_through(monkeypatch):
    """torch 2.11 rejects the interpreter's kernels; the compat wrapper then runs them raw."""
    pytest.importorskip("triton")
    from triton.runtime.interpreter import InterpretedFunction

    def rejecting(kernel):
        raise RuntimeError("wrap_triton only works on functions annotated with triton.jit or triton.autotune")

    monkeypatch.setattr(_triton_compat, "_torch_wrap_triton", rejecting)
    interpreted = InterpretedFunction.__new__(InterpretedFunction)
    assert _triton_compat.is_interpreted_kernel(interpreted)
    assert _triton_compat.wrap_triton(interpreted) is interpreted
    with pytest.raises(RuntimeError, match="wrap_triton only works"):
        _triton_compat.wrap_triton(lambda: None)  # not a kernel at all: torch's error stands


def test_triton_backend_runs_on_this_stack():
    """Where the Triton backend claims to run on the CPU (the interpreter), it really does."""
    if backends.unavailable_reason("triton", "cpu") is not None:
        pytest.skip(f"triton unavailable on cpu: {backends.unavailable_reason('triton', 'cpu')}")
    probs = torch.rand(3, 19, 23)
    got = backends.resolve("soft_aggregate", "triton", backends.describe(probs))(probs)
    torch.testing.assert_close(got, reference.soft_aggregate(probs), rtol=1e-5, atol=1e-6)
