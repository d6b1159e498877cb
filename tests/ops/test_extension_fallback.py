"""Without a usable extension, swiftcuda still imports and runs on the other backends, and says why once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Each scenario runs in a fresh interpreter: the extension's status is cached per process.
PRELUDE = textwrap.dedent(
    """
    import importlib.abc, json, logging, sys
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    logging.getLogger("swiftcuda").addHandler(Keep())
    logging.getLogger("swiftcuda").setLevel(logging.INFO)
    """
)

SCENARIOS = {
    # The module was never built: None in sys.modules makes its import fail like a missing file.
    "missing": "sys.modules['swiftcuda._C'] = None",
    # A build that does not load, e.g. compiled against another torch.
    "broken": textwrap.dedent(
        """
        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == 'swiftcuda._C':
                    raise ImportError('undefined symbol: _ZN3c106detail14torchCheckFail')
        sys.meta_path.insert(0, Broken())
        """
    ),
}

BODY = textwrap.dedent(
    """
    import torch
    import swiftcuda
    from swiftcuda import ops
    from swiftcuda.ops import backends
    keys, values = torch.randn(1, 8, 30), torch.randn(1, 4, 30)
    read = ops.memory_read(keys, values, torch.randn(1, 8, 5), torch.randn(1, 4, 5))
    ops.memory_update(keys, values, torch.randn(1, 8, 5), torch.randn(1, 4, 5))
    print(json.dumps({
        "available": backends.available_backends("cpu"),
        "cpu_reason": backends.unavailable_reason("cpu", "cpu"),
        "cuda_reason": backends.unavailable_reason("cuda", "cuda"),
        "read_shape": list(read.shape),
        "warnings": [m for m in records if "unavailable" in m],
    }))
    """
)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_import_and_ops_work_without_the_extension(scenario):
    script = PRELUDE + SCENARIOS[scenario] + BODY
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["read_shape"] == [1, 8, 5]
    assert "cpu" not in report["available"] and "reference" in report["available"], report["available"]
    assert len(report["warnings"]) == 1, f"the reason is logged exactly once: {report['warnings']}"
    expected = "not built" if scenario == "missing" else "undefined symbol"
    for reason in (report["cpu_reason"], report["cuda_reason"], report["warnings"][0]):
        assert expected in reason, reason
