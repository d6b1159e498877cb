"""``OnnxSegmenter``: the engine's ``step()`` on ONNX Runtime, from an export folder.

The four graphs of :mod:`swiftcuda.onnx.graphs` do all the tensor work; this runner carries the
memory state between them (as ONNX Runtime values, never copied to NumPy in the steady state) and
takes the few host decisions the engine also takes on the host: the padding, the given masks (new
objects grow the state), and which frames update the long-term memory (the official schedule, or
the PAM trigger computed with torch on the frames and probabilities it returns).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from swiftcuda.errors import InputError
from swiftcuda.inference.inputs import merge_given_labels
from swiftcuda.inference.memory import check_room_for_given, default_capacity
from swiftcuda.inference.padding import Padding
from swiftcuda.inference.rescale import AUTO, InternalSize, Rescaler, SameSize, check_request, video_scale
from swiftcuda.inference.stream import VideoStream
from swiftcuda.inference.trigger import PamOptions, make_trigger
from swiftcuda.model import SwiftNet
from swiftcuda.onnx.dependencies import onnxruntime
from swiftcuda.onnx.export import read_sidecar
from swiftcuda.onnx.graphs import GRAPH_NAMES
from swiftcuda.ops import novel_pixel_count
from swiftcuda.precision import dtype_name

logger = logging.getLogger(__name__)

#: Execution providers used when present, fastest first.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_STATE_DTYPES = {"fp32": np.float32, "fp16": np.float16}


def choose_providers(available: list[str], requested: list[str] | None = None) -> list[str]:
    """The execution providers to run with: ``requested`` (all must be available), or else the
    :data:`PREFERRED_PROVIDERS` that ``available`` has, fastest first.

    Raises:
        InputError: a requested provider is not available.
    """
    if requested is None:
        return [p for p in PREFERRED_PROVIDERS if p in available]
    missing = [p for p in requested if p not in available]
    if missing:
        raise InputError(
            f"this onnxruntime has no {', '.join(missing)} (it has {', '.join(available)}): choose among those"
        )
    return list(requested)


@dataclass
class _PreviousFrame:
    """What the next step needs of the frame in the previous-frame slot (as the engine keeps it)."""

    index: int
    given_objects: list[int]  # memorised in full
    chosen: bool  # its most novel pixels go to the long-term memory


class OnnxSegmenter(VideoStream):
    """:class:`~swiftcuda.inference.Segmenter`'s streaming API on ONNX Runtime.

    Example::

        seg = OnnxSegmenter("exported/", memory="official", mem_every=5)
        probs = seg.step(first_image, mask=labels)  # (K+1, H, W) float32 CPU tensor
        probs = seg.step(next_image)
        labels = seg.to_labels(probs)

    Args:
        folder: an export folder (``swiftcuda export --onnx``).
        memory: "official" (every ``mem_every`` frames) or "pam" (variation-aware trigger, decided
            in torch on the CPU from the probabilities the graphs return).
        mem_every, beta, pam: as for the engine.
        capacity: long-term entries per object; None for the engine's default for the frame size
            (:func:`~swiftcuda.inference.default_capacity`), as for the engine.
        providers: ONNX Runtime execution providers; None for TensorRT, CUDA, CPU, those present.
        threads: intra-op threads of each session (None: ONNX Runtime's default, all cores).
        internal_size: the size the graphs run at, as for the engine
            (:mod:`swiftcuda.inference.rescale`; "auto" takes the exported weights' recommended
            size from the sidecar). Outputs are always at the input's size.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        memory: str = "official",
        *,
        mem_every: int = 5,
        beta: float = 0.1,
        capacity: int | None = None,
        pam: PamOptions | None = None,
        providers: list[str] | None = None,
        threads: int | None = None,
        internal_size: InternalSize = AUTO,
    ) -> None:
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta must be in (0, 1], got {beta}")
        ort = onnxruntime()
        self.folder = Path(folder)
        self.sidecar = read_sidecar(self.folder)
        self.precision = self.sidecar["precision"]
        self.providers = choose_providers(ort.get_available_providers(), providers)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the optimiser's notes are not the user's concern
        if threads is not None:
            options.intra_op_num_threads = threads
        self._sessions = {
            name: ort.InferenceSession(str(self.folder / f"{name}.onnx"), options, providers=self.providers)
            for name in GRAPH_NAMES
        }
        self._ort_value = ort.OrtValue.ortvalue_from_numpy
        self.device = torch.device("cpu")  # where step() returns its probabilities
        self.memory_mode = memory
        self.trigger = make_trigger(memory, mem_every, pam)
        self.beta = beta
        self.capacity = capacity
        self.internal_size = check_request(internal_size)
        self._dtype = _STATE_DTYPES[self.precision]
        self.reset()

    @classmethod
    def from_model(cls, model: SwiftNet, notify: Callable[[str], None] = logger.info, **options: Any) -> OnnxSegmenter:
        """An OnnxSegmenter of ``model``, exported through the cache on first use
        (:func:`~swiftcuda.onnx.cache.cached_export`): fp16 for a float16 model, else fp32.

        Args:
            model: a SwiftNet in float32 or float16.
            notify: called with one line when an export starts.
            options: the constructor's keyword arguments.

        Raises:
            InputError: a bfloat16 model (ONNX Runtime has no bfloat16 convolutions).
        """
        from swiftcuda.onnx.cache import cached_export

        dtype = next(model.parameters()).dtype
        if dtype not in (torch.float32, torch.float16):
            raise InputError(
                f"ONNX Runtime runs fp32 or fp16 models, not {dtype_name(dtype)}: use precision fp32 or fp16"
            )
        return cls(cached_export(model, "fp16" if dtype == torch.float16 else "fp32", notify), **options)

    def reset(self) -> None:
        """Forget the video: the next step must carry a mask."""
        self.trigger.reset()
        self.frame_index = 0
        self._memorized: tuple[int, bool] | None = None
        self._object_ids: list[int] = []
        self._ids_table: Tensor | None = None
        self._scale: Rescaler | SameSize | None = None
        self._padding: Padding | None = None
        self._state: dict = {}
        self._previous: _PreviousFrame | None = None

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The memory state as NumPy arrays (copies; names and layout as in the sidecar)."""
        return {name: value.numpy() for name, value in self._state.items()}

    @property
    def long_term_lengths(self) -> list[int]:
        """Long-term memory entries held per object."""
        return [int(n) for n in self._state["long_term_length"].numpy()] if self._state else []

    @property
    def last_memorized(self) -> int | None:
        """The frame whose pixels the last step added to the long-term memory, if any."""
        if self._memorized is None:
            return None
        index, happened = self._memorized
        return index if happened else None

    @torch.inference_mode()
    def step(self, image: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None) -> Tensor:
        """Segment the next frame (the contract of :meth:`Segmenter.step`).

        Args:
            image: (H, W, 3) uint8 RGB (gray and RGBA converted) or a (3, H, W) float tensor in [0, 1].
            mask: optional (H, W) integer labels, 0 = background; required on the first frame.

        Returns:
            (K+1, H, W) float32 probabilities on the CPU, background first, then the objects in
            :attr:`object_ids` order.
        """
        frame = self._prepare(image, mask)
        frame, labels, given_full = self._scaled_inputs(frame, mask)
        query = self._run("encode_query", {"frame": self._padding.pad(frame).numpy()})
        probs = None
        if self._previous is not None:
            names = ("previous_keys", "previous_values", "long_term_keys", "long_term_values", "long_term_length")
            feeds = {name: query[name] for name in ("key", "value", "r3", "r2")}
            feeds.update({name: self._state[name] for name in names})
            padded = torch.from_numpy(self._run("read_and_decode", feeds)["probs"].numpy())
            self._update_long_term(self._previous)
            probs = self._padding.crop(padded)
        given: list[int] = []
        if labels is not None:
            probs, given = self._merge_mask(probs, labels)
        chosen = self.trigger.observe(self.frame_index, frame, probs[1:])
        self._memorize_current(query, probs)
        self._previous = _PreviousFrame(index=self.frame_index, given_objects=given, chosen=chosen)
        self.frame_index += 1
        return self._output(probs, given_full)

    # -- the step ------------------------------------------------------------------------------

    def _run(self, graph: str, feeds: dict) -> dict:
        """Run one graph; NumPy feeds are wrapped (no copy), outputs stay ONNX Runtime values."""
        session = self._sessions[graph]
        values = {
            name: self._ort_value(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
            for name, v in feeds.items()
        }
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run_with_ort_values(names, values)))

    def _start(self, input_height: int, input_width: int) -> None:
        self._scale = video_scale(
            self.internal_size, input_height, input_width, recommended=self.sidecar.get("recommended_internal_size")
        )
        height, width = self._scale.internal_size
        stride = int(self.sidecar["stride"])
        self._padding = Padding.to_multiple(height, width, stride)
        grid = (-(-height // stride), -(-width // stride))
        pixels = grid[0] * grid[1]
        self._capacity = default_capacity(pixels) if self.capacity is None else self.capacity
        if self._capacity < 2 * pixels:
            raise InputError(
                f"a memory capacity of {self._capacity} entries cannot hold two frames of {pixels} "
                f"memory pixels: use a capacity of at least {2 * pixels}"
            )
        self._novel_count = np.array(novel_pixel_count(pixels, self.beta), dtype=np.int64)
        self._state = {name: self._ort_value(array) for name, array in self._empty_state(grid).items()}

    def _empty_state(self, grid: tuple[int, int]) -> dict[str, np.ndarray]:
        """The state of zero objects for a memory grid of ``grid`` (h, w)."""
        dims = {"h": grid[0], "w": grid[1], "N": self._capacity}
        return {
            entry["name"]: np.zeros(
                (0, *(dims.get(d, d) for d in entry["shape"][1:])),
                dtype=np.int64 if entry["dtype"] == "int64" else self._dtype,
            )
            for entry in self.sidecar["state"]
        }

    def _add_objects(self, count: int) -> None:
        """Zero rows for ``count`` new objects in every state tensor."""
        grown = {}
        for name, value in self._state.items():
            array = value.numpy()
            grown[name] = self._ort_value(np.concatenate([array, np.zeros((count, *array.shape[1:]), array.dtype)]))
        self._state = grown

    def _merge_mask(self, probs: Tensor | None, labels: Tensor) -> tuple[Tensor, list[int]]:
        """Apply a given mask (at the internal size): add new objects, replace the named ones."""
        named_ids = [int(i) for i in torch.unique(labels).tolist() if i != 0]
        new_ids = [i for i in named_ids if i not in self._object_ids]
        if new_ids:
            self._object_ids += new_ids
            self._ids_table = None
            self._add_objects(len(new_ids))
        return merge_given_labels(probs, labels, self._object_ids)

    def _update_long_term(self, previous: _PreviousFrame) -> None:
        """The previous frame into the long-term memory: in full for its given objects, its most
        novel pixels for the others when it was chosen."""
        objects = len(self._object_ids)
        in_full = np.zeros(objects, dtype=bool)
        in_full[previous.given_objects] = True
        novel = ~in_full if previous.chosen else np.zeros(objects, dtype=bool)
        happened = bool(in_full.any() or novel.any())
        self._memorized = (previous.index, happened)
        if not happened:
            return
        if in_full.any():  # the given frames must leave room for one more frame, as the engine checks
            pixels = int(np.prod(self._state["previous_keys"].shape()[2:]))
            for protected in self._state["first_length"].numpy()[in_full]:
                check_room_for_given(int(protected) + pixels, pixels, pixels, self._capacity)
        names = (
            "long_term_keys",
            "long_term_values",
            "long_term_length",
            "first_length",
            "previous_keys",
            "previous_values",
        )
        feeds = {name: self._state[name] for name in names}
        feeds.update(in_full=in_full, novel=novel, novel_count=self._novel_count)
        updated = self._run("update_memory", feeds)
        for name in ("long_term_keys", "long_term_values", "long_term_length", "first_length"):
            self._state[name] = updated[f"{name}_out"]

    def _memorize_current(self, query: dict, probs: Tensor) -> None:
        """The current frame's keys and values into the previous-frame slot."""
        object_probs = self._padding.pad(probs[1:]).contiguous().numpy()
        feeds = {name: query[name] for name in ("r4", "r3", "r2", "c1")}
        feeds["object_probs"] = object_probs
        encoded = self._run("encode_memory", feeds)
        self._state["previous_keys"] = encoded["previous_keys_out"]
        self._state["previous_values"] = encoded["previous_values_out"]
