"""Fixtures that put stand-in official modules on sys.modules for one test."""

from __future__ import annotations

import sys

import pytest
import torch


@pytest.fixture
def install(monkeypatch):
    """install(modules): place ``{name: module}`` in sys.modules until the test ends."""

    def place(modules):
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return modules

    return place


@pytest.fixture
def generator() -> torch.Generator:
    """A fresh seed each run (printed on failure through the test's repr of it)."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
