"""The shared patch machinery: import errors named clearly, handles that restore what was there."""

from __future__ import annotations

import sys

import pytest

import swiftcuda.integrations.stm as st
from swiftcuda.errors import SwiftcudaError
from swiftcuda.integrations import IntegrationError, PatchHandle


def test_a_found_module_whose_own_import_fails_names_the_missing_dependency(tmp_path, monkeypatch):
    (tmp_path / "model.py").write_text("import a_dependency_nobody_has_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    with pytest.raises(
        IntegrationError, match="found but importing it failed: no module named 'a_dependency_nobody_has_installed'"
    ) as caught:
        st.patch()
    assert isinstance(caught.value, SwiftcudaError) and isinstance(caught.value, ImportError)
    monkeypatch.delitem(sys.modules, "model", raising=False)


def test_handle_restores_own_and_inherited_attributes():
    class Base:
        def read(self):
            return "base"

    class Child(Base):
        def write(self):
            return "child"

    handle = PatchHandle("test")
    handle.replace(Child, "read", lambda self: "patched read")
    handle.replace(Child, "write", lambda self: "patched write")
    assert (Child().read(), Child().write()) == ("patched read", "patched write")
    assert handle.targets == [
        f"{Child.__module__}.{Child.__qualname__}.read",
        f"{Child.__module__}.{Child.__qualname__}.write",
    ]
    handle.undo()
    assert (Child().read(), Child().write()) == ("base", "child")
    assert "read" not in Child.__dict__  # inherited again, not copied onto the subclass
    assert repr(handle) == "PatchHandle(test: undone)"
