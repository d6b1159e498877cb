"""The ``onnx`` extra: ONNX, ONNX Runtime and (to export) onnxscript, imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

from swiftcuda.errors import InputError

#: What a user runs to get the pieces this package needs.
INSTALL_HINT = "pip install swiftcuda[onnx]"


def _module(name: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise InputError(f"{purpose} needs the {name} package, which is not installed: {INSTALL_HINT}") from None


def require_onnx(export: bool = False) -> None:
    """Check that the extra is installed (``export``: also what ``torch.onnx.export`` needs).

    Raises:
        InputError: one line naming the missing package and the install command.
    """
    purpose = "exporting to ONNX" if export else "running ONNX models"
    _module("onnx", purpose)
    if export:
        _module("onnxscript", purpose)  # torch.onnx.export(dynamo=True) translates with it
    else:
        _module("onnxruntime", purpose)


def onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module (InputError with the install command when missing)."""
    return _module("onnxruntime", "running ONNX models")
