"""swiftcuda.ops is the bottom layer: it imports nothing of swiftcuda above it."""

from __future__ import annotations

import ast
from pathlib import Path

import swiftcuda.ops

#: What ops may import from swiftcuda outside itself: the error base classes (a leaf module), the
#: kernel sources and the compiled extension.
ALLOWED = ("swiftcuda.ops", "swiftcuda.errors", "swiftcuda.kernels", "swiftcuda._C")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _upward(paths) -> set[str]:
    return {
        f"{path.name}: {name}"
        for path in paths
        for name in _imports(path)
        if (name == "swiftcuda" or name.startswith("swiftcuda.")) and not name.startswith(ALLOWED)
    }


def test_ops_imports_nothing_above_it():
    upward = _upward(Path(swiftcuda.ops.__file__).parent.glob("*.py"))
    assert not upward, sorted(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("from swiftcuda import _extension\nimport swiftcuda.model\nfrom swiftcuda.ops import schema\n")
    assert _upward([module]) == {"module.py: swiftcuda._extension", "module.py: swiftcuda.model"}
