"""Finding another project's module on the user's path and swapping its methods reversibly.

Each integration looks its targets up by module and attribute name, checks that they are the ones
it knows (their parameter names), swaps them through a :class:`PatchHandle` and gives the handle to
the user, whose ``undo()`` puts every original back. Nothing is kept in this module: the handle is
the only record of a patch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, Self

from swiftcuda.errors import SwiftcudaError

__all__ = ["IntegrationError", "PatchHandle", "find_attribute", "import_official", "mark_replacement"]

# Set on every replacement function, so that patching twice is caught and undo can tell its own.
_MARK = "__swiftcuda_integration__"


class IntegrationError(SwiftcudaError, ImportError):
    """The official module to patch is missing, is not the expected one, or is already patched."""


def import_official(family: str, module_name: str, fix: str) -> ModuleType:
    """Import ``module_name`` as the user's path has it, or raise one clear :class:`IntegrationError`.

    Args:
        family: the project's name for messages ("XMem").
        module_name: dotted module name ("inference.memory_manager").
        fix: what the user should do when it is missing ("put the XMem repository on PYTHONPATH").
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise IntegrationError(f"{family}'s module {module_name!r} is not importable: {fix}") from None
        raise IntegrationError(
            f"{family}'s module {module_name!r} was found but importing it failed: no module named "
            f"{missing!r} (install {family}'s own requirements)"
        ) from error


def find_attribute(family: str, module: ModuleType, path: str, parameters: Sequence[str] | None, fix: str) -> Any:
    """``module.<path>`` (dotted, e.g. "MemoryManager.match_memory"), checked to be the expected one.

    Args:
        family: the project's name for messages.
        module: the imported official module.
        path: attribute path inside the module.
        parameters: for a function, the names its leading parameters must have (``self`` included
            for methods); None to check only that it exists.
        fix: the remedy named in the error.
    """
    where = f"{module.__name__}.{path}"
    origin = getattr(module, "__file__", None) or "(no file)"
    target: Any = module
    for part in path.split("."):
        if not hasattr(target, part):
            raise IntegrationError(
                f"{where} not found in {origin}: this is not {family}'s module, or a version "
                f"swiftcuda does not know; {fix}"
            )
        target = getattr(target, part)
    if getattr(target, _MARK, None) is not None:
        raise IntegrationError(f"{where} is already patched by swiftcuda: call undo() on the earlier handle first")
    if parameters is not None:
        try:
            names = list(inspect.signature(target).parameters)
        except (TypeError, ValueError):
            names = []
        if names[: len(parameters)] != list(parameters):
            raise IntegrationError(
                f"{where} in {origin} takes ({', '.join(names)}), expected ({', '.join(parameters)}): "
                f"a version of {family} swiftcuda does not know; {fix}"
            )
    return target


def mark_replacement(function: Callable[..., Any], family: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """Give a replacement the original's name and the mark that identifies swiftcuda's patches."""
    function.__name__ = getattr(original, "__name__", function.__name__)
    function.__qualname__ = getattr(original, "__qualname__", function.__qualname__)
    setattr(function, _MARK, family)
    return function


@dataclass
class _Swap:
    owner: Any
    name: str
    original: Any
    owned: bool  # whether the original lived in the owner's own __dict__ (not inherited)


class PatchHandle:
    """The record of one patch: ``undo()`` restores every replaced attribute, in reverse order.

    Usable as a context manager (the patch is undone on leaving the block). ``undo()`` is safe to
    call more than once.
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._swaps: list[_Swap] = []

    def replace(self, owner: Any, name: str, replacement: Any) -> None:
        """Set ``owner.name = replacement``, remembering what was there."""
        owned = name in getattr(owner, "__dict__", {})
        original = owner.__dict__[name] if owned else getattr(owner, name)
        self._swaps.append(_Swap(owner, name, original, owned))
        setattr(owner, name, replacement)

    @property
    def active(self) -> bool:
        """Whether the patch is in place (not yet undone)."""
        return bool(self._swaps)

    @property
    def targets(self) -> list[str]:
        """The replaced attributes, as ``module.Class.name``."""
        return [f"{_qualified(swap.owner)}.{swap.name}" for swap in self._swaps]

    def undo(self) -> None:
        """Put the originals back."""
        while self._swaps:
            swap = self._swaps.pop()
            if swap.owned:
                setattr(swap.owner, swap.name, swap.original)
            else:
                delattr(swap.owner, swap.name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = ", ".join(self.targets) if self.active else "undone"
        return f"PatchHandle({self.family}: {state})"


def _qualified(owner: Any) -> str:
    if isinstance(owner, ModuleType):
        return owner.__name__
    return f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', owner)}"
