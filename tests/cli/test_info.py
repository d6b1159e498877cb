"""``swiftcuda info``: versions, backends per device, and the compiled extension."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

import swiftcuda
from swiftcuda.cli import main
from swiftcuda.ops import backends, extension


def test_info_prints_versions_backends_and_extension(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"swiftcuda  {swiftcuda.__version__}" in text
    assert f"torch      {torch.__version__}" in text
    for word in ("python", "triton", "GPU", "backends", "extension (swiftcuda._C)"):
        assert word in text
    cpu_line = next(line for line in text.splitlines() if line.startswith("  cpu"))
    assert all(name in cpu_line for name in backends.available_backends("cpu"))
    status = extension.status()
    if status.loaded:
        assert f"loaded from {status.path}" in text
        if status.cuda:
            assert "CUDA kernels: compiled with CUDA" in text and "sm_80" in text and "sm_90" in text
    else:
        assert f"not loaded: {status.error}" in text


def test_info_json_is_machine_readable(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["swiftcuda"] == swiftcuda.__version__
    assert info["backends"]["cpu"]["available"] == backends.available_backends("cpu")
    assert info["backends"]["cpu"]["present"] is True
    assert info["backends"]["cuda"]["present"] is torch.cuda.is_available()
    assert info["extension"]["loaded"] is extension.status().loaded
    for name, reason in info["backends"]["cpu"]["unavailable"].items():
        assert "cpu" in backends.BACKENDS[name].devices and reason == backends.unavailable_reason(name, "cpu")


def test_info_says_why_the_extension_did_not_load():
    script = (
        "import sys; sys.modules['swiftcuda._C'] = None\n"
        "from swiftcuda.cli import main; raise SystemExit(main(['info']))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "not loaded: the extension swiftcuda._C is not built" in run.stdout
    assert "- cpu: the extension swiftcuda._C is not built" in run.stdout
