"""The Triton interpreter's share of the op grids.

Under ``TRITON_INTERPRET=1`` every Triton program runs as numpy, one op at a time, so a grid case
costs seconds to minutes where a compiled backend takes milliseconds. The compiled backends (the
C++ CPU kernels here, Triton and CUDA on a GPU) run every case of each grid; the interpreter runs a
fixed share of it, chosen so that every value of every axis still meets the interpreted kernels.
``SWIFTCUDA_FULL_GRID=1`` runs the whole grid under the interpreter too.
"""

from __future__ import annotations

import os

import pytest
import torch

#: Set to 1 to run every case of the op grids under the Triton interpreter.
FULL_GRID_VARIABLE = "SWIFTCUDA_FULL_GRID"


def is_interpreted(backend: str, device: torch.device | str) -> bool:
    """True for the Triton backend on the CPU: its kernels run under the interpreter."""
    return backend == "triton" and torch.device(device).type == "cpu"


def runs_whole_grid() -> bool:
    return os.environ.get(FULL_GRID_VARIABLE) == "1"


def on_diagonal(positions: tuple[int, ...], period: int) -> bool:
    """True for one case in ``period`` of a grid: the cases whose axis positions sum to a multiple of
    ``period``. Along any axis of at least ``period`` values, each combination of the other axes
    meets exactly one such case per ``period`` values, so every value of that axis is run."""
    return sum(positions) % period == 0


def skip_unless_chosen(backend: str, device: torch.device | str, chosen: bool, share: str) -> None:
    """Skip an interpreted case that is not ``chosen``; ``share`` says which part of the grid runs."""
    if is_interpreted(backend, device) and not chosen and not runs_whole_grid():
        pytest.skip(f"interpreted Triton runs {share} ({FULL_GRID_VARIABLE}=1 runs it all)")
