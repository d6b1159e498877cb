"""Capturing the engine's steady-state step as CUDA graphs and replaying them.

A captured graph replays a whole step's kernels with one launch, removing the per-kernel launch
cost that dominates a SwiftNet step at 1/16 resolution. Each variant of the step (object count,
update or not) gets its own graph; all graphs share one memory pool. Tensors a graph reads that
change between replays (the frame, the trigger's decision) live at fixed addresses: the frame is
copied into the graph's static input, and other state comes from :meth:`StepGraphs.state`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor


class StepGraphs:
    """The captured variants of one video's steady-state step."""

    def __init__(self) -> None:
        self._graphs: dict[Hashable, tuple[torch.cuda.CUDAGraph, Tensor, Any]] = {}
        self._states: dict[str, Tensor] = {}
        self._pool = None

    def clear(self) -> None:
        """Drop every graph and state (buffers moved, or a new video starts)."""
        self._graphs.clear()
        self._states.clear()
        self._pool = None

    def state(self, name: str, like: Tensor | None = None) -> Tensor:
        """A persistent tensor graphs may read and write, created as a copy of ``like`` on first use."""
        if name not in self._states:
            if like is None:
                raise KeyError(f"graph state {name!r} was never created")
            self._states[name] = like.clone()
        return self._states[name]

    def replay(self, variant: Hashable, frame: Tensor, body: Callable[[Tensor], Any]) -> Any:
        """Run ``body(frame)`` through the graph of ``variant``, capturing it on first use.

        Args:
            variant: identifies the sequence of work ``body`` launches.
            frame: this step's input; copied into the graph's static input.
            body: launches the step's device work on its argument and returns its output (a
                tensor or a tuple of them).

        Returns:
            The graph's static output (valid until the next replay).
        """
        entry = self._graphs.get(variant)
        if entry is None:
            static_frame = frame.clone()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                output = body(static_frame)
            self._pool = graph.pool()
            entry = self._graphs[variant] = (graph, static_frame, output)
        graph, static_frame, output = entry
        static_frame.copy_(frame)
        graph.replay()
        return output
