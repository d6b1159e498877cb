"""The package's layers: what each part of ``swiftcuda/`` may import.

Every import counts, at module level or inside a function (a deferred import is still a dependency).
The parts are the subpackages and the top-level modules of ``swiftcuda/``; :data:`LAYERS` orders
them, lowest first. A part imports its own layer and those below, never one above, and the parts'
import graph has no cycle. The command line sits on top: nothing below it imports ``swiftcuda.cli``
or handles an ``argparse.Namespace`` (the CLI turns its arguments into typed options once).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "swiftcuda"

#: The parts of the package, lowest layer first.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "cpu", "precision", "_version"),  # no swiftcuda dependencies but these
    ("io",),  # frames, masks, outputs
    ("ops",),  # the op contracts, their backends and kernels
    ("model", "nn", "weights"),  # the architecture and its checkpoints
    ("optimize",),  # how a model runs fast: preparation
    ("inference",),  # the streaming engine
    ("data", "metrics", "onnx", "train", "options"),  # what builds on the engine; its options
    ("engine",),  # options -> model -> segmenter
    ("many", "live", "bench", "demo", "integrations", "annotate"),  # applications of the engine and ops
    ("__init__",),  # the public API (swiftcuda/__init__.py)
    ("cli", "__main__"),  # the command line
)
LAYER_OF = {part: index for index, parts in enumerate(LAYERS) for part in parts}
#: Parts allowed to import ``swiftcuda.cli`` and ``argparse``.
COMMAND_LINE = ("cli", "__main__")
#: Top-level modules that belong to a subpackage's part: the compiled extension's loader and the
#: Triton kernels (installed as ``swiftcuda.kernels``) are the ops'.
PART_OF_MODULE = {"kernels": "ops"}


def part_of(module: str) -> str:
    """``swiftcuda.inference.segmenter`` -> ``inference``; the package itself -> ``__init__``."""
    names = module.split(".")
    part = names[1] if len(names) > 1 else "__init__"
    return PART_OF_MODULE.get(part, part)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    names = list(relative.parts)
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def _is_package_member(name: str, root: Path) -> bool:
    """Whether ``swiftcuda.<name>`` is a module or subpackage (not a name defined in __init__)."""
    return (root / f"{name}.py").is_file() or (root / name).is_dir()


def imported_modules(tree: ast.AST, module: str, is_package: bool, root: Path = PACKAGE) -> Iterator[str]:
    """The ``swiftcuda`` modules a parsed module imports, anywhere in it."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "swiftcuda" or alias.name.startswith("swiftcuda."):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != "swiftcuda" and not source.startswith("swiftcuda."):
                continue
            if source == "swiftcuda":
                # ``from swiftcuda import ops`` imports the module ops; ``from swiftcuda import Segmenter``
                # the package's public API.
                for alias in node.names:
                    yield f"swiftcuda.{alias.name}" if _is_package_member(alias.name, root) else "swiftcuda"
            else:
                yield source


def uses_argparse(tree: ast.AST) -> bool:
    """Whether a parsed module imports argparse or names a ``Namespace``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "Namespace":
            return True
    return False


def package_modules(root: Path = PACKAGE) -> dict[str, tuple[Path, ast.AST]]:
    """Every module of the package (the Triton kernels' folder is a link to kernels/, skipped), parsed."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        if "kernels" in path.relative_to(root).parts:
            continue
        modules[module_name(path, root)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return modules


def part_graph(modules: dict[str, tuple[Path, ast.AST]], root: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """part -> imported part -> the modules whose imports make that edge."""
    graph: dict[str, dict[str, list[str]]] = {}
    for name, (path, tree) in modules.items():
        part = part_of(name)
        edges = graph.setdefault(part, {})
        for target in imported_modules(tree, name, path.name == "__init__.py", root):
            target_part = part_of(target)
            if target_part != part:
                edges.setdefault(target_part, []).append(name)
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """A cycle of parts (its parts in order, the first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(part: str) -> list[str] | None:
        state[part] = 1
        path.append(part)
        for target in sorted(graph.get(part, {})):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[part] = 2
        return None

    for part in sorted(graph):
        if part not in state:
            found = visit(part)
            if found:
                return found
    return None


def upward_imports(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """One line per import of a higher layer (or of a part no layer lists)."""
    problems = []
    for part, edges in sorted(graph.items()):
        for target, where in sorted(edges.items()):
            if part not in LAYER_OF or target not in LAYER_OF:
                unknown = part if part not in LAYER_OF else target
                problems.append(f"swiftcuda/{unknown} is in no layer: add it to LAYERS")
            elif LAYER_OF[target] > LAYER_OF[part]:
                problems.append(f"{part} imports the higher {target} ({', '.join(sorted(set(where)))})")
    return problems


@pytest.fixture(scope="module")
def modules():
    return package_modules()


def test_every_part_of_the_package_has_a_layer(modules):
    unlisted = sorted({part_of(name) for name in modules} - set(LAYER_OF))
    assert not unlisted, f"add these parts of swiftcuda/ to LAYERS: {unlisted}"


def test_nothing_below_the_command_line_imports_it(modules):
    offenders = [
        name
        for name, (path, tree) in modules.items()
        if part_of(name) not in COMMAND_LINE
        and any(part_of(target) == "cli" for target in imported_modules(tree, name, path.name == "__init__.py"))
    ]
    assert not offenders, f"these modules import swiftcuda.cli: {offenders}"


def test_no_namespace_below_the_command_line(modules):
    offenders = [
        name for name, (_, tree) in modules.items() if part_of(name) not in COMMAND_LINE and uses_argparse(tree)
    ]
    assert not offenders, f"argparse below the command line (give typed options instead): {offenders}"


def test_the_parts_import_no_cycle(modules):
    assert find_cycle(part_graph(modules)) is None


def test_no_part_imports_a_higher_layer(modules):
    assert upward_imports(part_graph(modules)) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A planted package with each fault: the functions above must report them."""
    root = tmp_path / "swiftcuda"
    for folder in ("ops", "model", "cli"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("from swiftcuda.model import Net\n")
    (root / "errors.py").write_text("")
    (root / "ops" / "table.py").write_text("def late():\n    from ..model import net\n")  # upward, in a function
    (root / "model" / "net.py").write_text("import argparse\nfrom swiftcuda import ops, errors\n")
    (root / "model" / "run.py").write_text(
        "def run(args):\n    from swiftcuda.cli.main import x\n    return args.Namespace\n"
    )
    modules = package_modules(root)
    graph = part_graph(modules, root)
    assert graph["ops"] == {"model": ["swiftcuda.ops.table"]}
    assert set(graph["model"]) == {"ops", "errors", "cli"}
    assert graph["__init__"] == {"model": ["swiftcuda"]}
    assert find_cycle(graph) == ["model", "ops", "model"]
    assert "ops imports the higher model (swiftcuda.ops.table)" in upward_imports(graph)
    assert "model imports the higher cli (swiftcuda.model.run)" in upward_imports(graph)
    assert [name for name, (_, tree) in modules.items() if uses_argparse(tree)] == [
        "swiftcuda.model.net",
        "swiftcuda.model.run",
    ]
