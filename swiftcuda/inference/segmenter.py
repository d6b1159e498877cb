"""The streaming engine: one video, one frame at a time.

Per frame t (the official evaluation's computation, in an order that keeps no trunk features
from one step to the next):

1. encode frame t as a query;
2. (t >= 1) read the memory, frame t-1 in full beside the long-term memory, and decode each
   object; merge the objects into one distribution over background and objects;
3. (t >= 1) let frame t-1 into the long-term memory: in full when it carried a given mask, else its
   most novel pixels when the trigger chose it (every ``mem_every`` frames in the official mode);
4. apply a given mask, if any, and ask the trigger whether frame t will go to the long-term memory;
5. encode frame t into memory through the light-aggregation encoder, from its trunk features
   and its masks, into the previous-frame slot that step 2 of frame t+1 reads.

The official code encodes frame t-1 into memory at the start of step t; doing it at the end of
step t-1 computes the same thing from the same inputs, and leaves nothing but the memory to carry
between steps. That makes the steady-state step (no mask given, the same objects) a fixed
sequence of device work: on a GPU it runs without host synchronisation and, with
``cuda_graphs=True``, is captured once as a CUDA graph and replayed for every later frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from swiftcuda import ops
from swiftcuda.inference.graphs import StepGraphs
from swiftcuda.inference.inputs import merge_given_labels
from swiftcuda.inference.memory import MemorySnapshot, MemoryStore, default_capacity
from swiftcuda.inference.padding import Padding
from swiftcuda.inference.rescale import AUTO, InternalSize, Rescaler, SameSize, check_request, video_scale
from swiftcuda.inference.stream import VideoStream
from swiftcuda.inference.trigger import PamOptions, make_trigger
from swiftcuda.model import QueryEncoding, SwiftNet
from swiftcuda.optimize import is_prepared, prepare
from swiftcuda.precision import warn_if_slow


@dataclass
class _PreviousFrame:
    """What the next step needs to know of the frame in the previous-frame slot.

    ``chosen`` is a host bool, or a 0-dim bool device tensor when the trigger decides on the device.
    """

    index: int
    given_objects: list[int]  # objects whose mask was given at this frame: memorised in full
    chosen: bool | Tensor  # its most novel pixels go to the long-term memory


@dataclass(frozen=True, eq=False)
class SegmenterState:
    """Everything a :class:`Segmenter` carries from one frame to the next, copied out of it by
    :meth:`Segmenter.save_state` (never modified afterwards, so it can be restored many times).

    Attributes:
        frame_index: the index the next frame will get (0: no frame seen yet).
        object_ids: the objects tracked, in channel order.
        memory_mode: the schedule the state was made under ("official" or "pam").
        memory: the memory store's contents (None before the first frame).
    """

    frame_index: int
    object_ids: tuple[int, ...]
    memory_mode: str
    memory: MemorySnapshot | None
    _scale: Any
    _padding: Padding | None
    _previous: _PreviousFrame | None
    _memorized: tuple[int, bool | Tensor] | None
    _trigger: Any

    @property
    def num_bytes(self) -> int:
        """Bytes of memory the state holds (tensors shared with other states included)."""
        return self.memory.num_bytes if self.memory is not None else 0


def _copied(value: bool | Tensor) -> bool | Tensor:
    return value.clone() if isinstance(value, Tensor) else value


class Segmenter(VideoStream):
    """Semi-supervised video object segmentation of one video as a stream of frames.

    Example::

        seg = Segmenter(model, memory="official", mem_every=5)
        probs = seg.step(first_image, mask=labels)  # (K+1, H, W), background first
        probs = seg.step(next_image)
        labels = seg.to_labels(probs)                # (H, W) object ids

    Args:
        model: a SwiftNet in eval mode; the engine runs on its device and in its dtype (for the
            fastest dtype here, load it with ``load_model(..., dtype="auto")``, the default; a
            dtype this CPU runs slowly gets one :class:`~swiftcuda.precision.SlowPrecisionWarning`).
            A model not prepared yet is prepared with the default options
            (:func:`swiftcuda.optimize.prepare`: a copy with batch norms folded and faster
            convolutions; the caller's model is not modified); a prepared one runs as it is, so
            prepare it yourself for other options (``prepare(model, PrepareOptions(tune=False))``),
            or :func:`~swiftcuda.optimize.mark_prepared` it to run the model itself.
        memory: "official" (the released evaluation schedule) or "pam" (variation-aware trigger).
        mem_every: update period of the official schedule.
        beta: fraction of a frame's pixels that a memory update appends.
        capacity: long-term memory entries per object; None for :func:`default_capacity`.
        pam: thresholds of the "pam" trigger.
        backend: op backend (None for the best available).
        cuda_graphs: on a GPU, capture the steady-state step as CUDA graphs and replay them.
        device_decisions: decide PAM updates on the device (no host synchronisation); None for
            "on a GPU". The official schedule is always decided on the host, where it is known.
        internal_size: the size the engine runs at (:mod:`swiftcuda.inference.rescale`): None for
            the input's size, an int for the shorter side (nothing is enlarged), (H, W) for exactly
            that, "auto" for the model's ``recommended_internal_size`` (set by
            :func:`~swiftcuda.weights.load_model`) within what the device handles well. Outputs
            are always at the input's size.
    """

    def __init__(
        self,
        model: SwiftNet,
        memory: str = "official",
        *,
        mem_every: int = 5,
        beta: float = 0.1,
        capacity: int | None = None,
        pam: PamOptions | None = None,
        backend: str | None = None,
        cuda_graphs: bool = False,
        device_decisions: bool | None = None,
        internal_size: InternalSize = AUTO,
    ) -> None:
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta must be in (0, 1], got {beta}")
        self.internal_size = check_request(internal_size)
        self.recommended_internal_size: int | None = getattr(model, "recommended_internal_size", None)
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        warn_if_slow(self.device, self.dtype)
        self.model = model.eval() if is_prepared(model) else prepare(model.eval())
        self.memory_mode = memory
        self.trigger = make_trigger(memory, mem_every, pam, backend=backend)
        self.beta = beta
        self.capacity = capacity
        self.backend = backend
        on_gpu = self.device.type == "cuda"
        self.device_decisions = self.trigger.decides_on_device and (
            on_gpu if device_decisions is None else device_decisions
        )
        self._graphs = StepGraphs() if cuda_graphs and on_gpu else None
        self.reset()

    def reset(self) -> None:
        """Forget the video: the next step must carry a mask."""
        self.trigger.reset()
        self.frame_index = 0
        self._memorized: tuple[int, bool | Tensor] | None = None
        self._object_ids: list[int] = []
        self._ids_table: Tensor | None = None
        self._scale: Rescaler | SameSize | None = None
        self._padding: Padding | None = None
        self._store: MemoryStore | None = None
        self._previous: _PreviousFrame | None = None
        if self._graphs is not None:
            self._graphs.clear()

    @property
    def memory(self) -> MemoryStore | None:
        """The memory store (for inspection), or None before the first frame."""
        return self._store

    @property
    def long_term_lengths(self) -> list[int]:
        """Long-term memory entries held per object."""
        return self._store.long_term_lengths if self._store is not None else []

    @property
    def last_memorized(self) -> int | None:
        """The frame whose pixels the last step added to the long-term memory, if any
        (synchronises when the decision was taken on the device)."""
        if self._memorized is None:
            return None
        index, happened = self._memorized
        return index if bool(happened) else None

    # -- saving and restoring the stream -------------------------------------------------------

    @torch.inference_mode()
    def save_state(self) -> SegmenterState:
        """A copy of the stream's state after the last step: the memory store (previous-frame slot
        and long-term memory), the trigger, the objects and the frame index.

        :meth:`restore_state` with it later (on this segmenter or another one of the same model
        and options) continues exactly as this one would have from here: the next steps give the
        same probabilities, bit for bit. A state shares its long-term memory with the previous
        state saved (or restored) while that memory has not changed, so saving after every frame
        costs one frame's keys and values per frame, and a long-term copy per memory update.
        """
        previous = self._previous
        if previous is not None:
            previous = replace(previous, given_objects=list(previous.given_objects), chosen=_copied(previous.chosen))
        memorized = None if self._memorized is None else (self._memorized[0], _copied(self._memorized[1]))
        return SegmenterState(
            frame_index=self.frame_index,
            object_ids=tuple(self._object_ids),
            memory_mode=self.memory_mode,
            memory=self._store.snapshot() if self._store is not None else None,
            _scale=self._scale,
            _padding=self._padding,
            _previous=previous,
            _memorized=memorized,
            _trigger=self.trigger.save_state(),
        )

    @torch.inference_mode()
    def restore_state(self, state: SegmenterState) -> None:
        """Continue from ``state`` (from :meth:`save_state`): the next step is frame ``state.frame_index``.

        Raises:
            ValueError: the state was made under another memory mode, or by a model of other key or
                value sizes or another dtype.
        """
        if state.memory_mode != self.memory_mode:
            raise ValueError(
                f"the state was saved with memory={state.memory_mode!r}, this segmenter uses {self.memory_mode!r}"
            )
        if state.memory is not None:
            config = self.model.config
            dims = (state.memory.previous_keys.shape[1], state.memory.previous_values.shape[1])
            if dims != (config.key_dim, config.value_dim):
                raise ValueError(
                    f"the state's memory has key/value sizes {dims}, this model {(config.key_dim, config.value_dim)}"
                )
        self.reset()
        if state.memory is None:
            return
        self._store = MemoryStore.from_snapshot(state.memory, self.device, self.dtype)
        self._scale, self._padding = state._scale, state._padding
        self._object_ids = list(state.object_ids)
        self.frame_index = state.frame_index
        previous = state._previous
        if previous is not None:
            self._previous = replace(
                previous, given_objects=list(previous.given_objects), chosen=_copied(previous.chosen)
            )
        if state._memorized is not None:
            self._memorized = (state._memorized[0], _copied(state._memorized[1]))
        self.trigger.restore_state(state._trigger)

    @torch.inference_mode()
    def step(
        self, image: np.ndarray | Tensor, mask: np.ndarray | Tensor | None = None, *, complete: bool = False
    ) -> Tensor:
        """Segment the next frame.

        Args:
            image: (H, W, 3) uint8 RGB (gray and RGBA converted) or a (3, H, W) float tensor in [0, 1].
            mask: optional (H, W) integer labels, 0 = background. Required on the first frame; on a
                later frame it adds the objects it introduces and replaces the prediction for those
                it names. Every object it names is kept in the memory in full, never evicted.
            complete: the mask gives every object of the frame (a corrected frame): the objects
                already tracked that it does not show are absent (probability 0 everywhere) and are
                memorised so; a mask of background only is then allowed.

        Returns:
            (K+1, H, W) float32 probabilities on the model's device, background first, then the
            objects in :attr:`object_ids` order.
        """
        frame = self._prepare(image, mask)
        steady = mask is None and self._previous is not None and not self._previous.given_objects
        if steady and self._graphs is not None:
            return self._replay(frame)
        complete = complete and mask is not None and bool(self._object_ids)
        frame, labels, given = self._scaled_inputs(frame, mask, allow_empty=complete)
        return self._output(self._finish(frame, self.encode(frame), labels, complete), given, complete)

    def encode(self, frames: Tensor) -> QueryEncoding:
        """Step 1 for (B, 3, H, W) frames of this video's size (a batched session passes several)."""
        return self.model.encode_query(self._padding.pad(frames))

    # -- the step ------------------------------------------------------------------------------

    def _finish(self, frame: Tensor, query: QueryEncoding, labels: Tensor | None, complete: bool = False) -> Tensor:
        """Steps 2 to 5 of the module docstring, eagerly, for an encoded frame.

        Args:
            frame: (1, 3, h, w) the frame at the internal size.
            query: its encoding.
            labels: (h, w) int64 given labels at the internal size, or None.
            complete: the labels give every object (see :meth:`step`).

        Returns:
            (K+1, h, w) probabilities at the internal size.
        """
        probs = self._predict(query, self._previous) if self._previous is not None else None
        given: list[int] = []
        if labels is not None:
            probs, given = self._merge_mask(probs, labels, complete)
        if self.device_decisions:
            chosen: bool | Tensor = self.trigger.decide(self.frame_index, frame, probs[1:])
        else:
            chosen = self.trigger.observe(self.frame_index, frame, probs[1:])
        self._memorize_current(query, probs)
        self._previous = _PreviousFrame(index=self.frame_index, given_objects=given, chosen=chosen)
        self.frame_index += 1
        return probs

    def _predict(self, query: QueryEncoding, previous: _PreviousFrame) -> Tensor:
        """Steps 2 and 3 of the module docstring: (K+1, H, W) probabilities of the current frame."""
        object_probs = self.model.segment_objects(query, *self._store.readable(), backend=self.backend)
        self._update_long_term(previous)
        return ops.soft_aggregate(self._padding.crop(object_probs), backend=self.backend)

    def _update_long_term(self, previous: _PreviousFrame) -> None:
        store, in_full, chosen = self._store, previous.given_objects, previous.chosen
        if isinstance(chosen, Tensor) and not in_full:
            store.memorize_previous_novel_where(chosen, self.beta, backend=self.backend)
            self._memorized = (previous.index, chosen)
            return
        chosen = bool(chosen)  # (a device decision is read back only on the rare given-mask frame)
        novel = [o for o in range(store.num_objects) if o not in in_full] if chosen else []
        store.memorize_previous_in_full(in_full)
        store.memorize_previous_novel(novel, self.beta, backend=self.backend)
        self._memorized = (previous.index, bool(in_full or novel))

    def _memorize_current(self, query: QueryEncoding, probs: Tensor) -> None:
        """Step 5: the current frame's keys and values into the previous-frame slot."""
        object_probs = self._padding.pad(probs[1:]).to(self.dtype)
        self._store.set_previous(*self.model.encode_memory(query.features, object_probs, backend=self.backend))

    # -- CUDA graphs -----------------------------------------------------------------------------

    def _replay(self, frame: Tensor) -> Tensor:
        """The steady-state step through a captured graph (one per object count and update variant)."""
        previous, store, graphs = self._previous, self._store, self._graphs
        device_decided = isinstance(previous.chosen, Tensor)
        if device_decided:
            flag = graphs.state("flag", like=previous.chosen)  # the captured graphs read and write it
            if previous.chosen is not flag:
                flag.copy_(previous.chosen)
            variant = ("device", store.num_objects)
        else:
            variant = ("host", bool(previous.chosen), store.num_objects)
            if previous.chosen:  # evictions are decided on the host, outside the graph
                store.make_room_for_novel(self.beta)
        frame, probs, output = graphs.replay(variant, frame, self._graph_body)
        if device_decided:
            self._memorized = (previous.index, previous.chosen)
            chosen: bool | Tensor = flag
        else:
            if previous.chosen:
                store.note_novel_appended(self.beta)
            self._memorized = (previous.index, bool(previous.chosen))
            chosen = self.trigger.observe(self.frame_index, frame, probs[1:])
        self._previous = _PreviousFrame(index=self.frame_index, given_objects=[], chosen=chosen)
        self.frame_index += 1
        # The graph's output is overwritten by the next replay: hand out a copy.
        return output.clone()

    def _graph_body(self, frame: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What a captured steady-state step computes; ``frame`` is the graph's static input, at the
        input's size: the resizes to and from the internal size are part of the graph.

        Python runs this once, at capture: it must only launch device work.

        Returns:
            The frame and the (K+1, h, w) probabilities at the internal size (for the trigger), and
            the probabilities at the input's size (the step's output).
        """
        previous = self._previous
        frame = self._scale.frame_in(frame)
        query = self.encode(frame)
        object_probs = self.model.segment_objects(query, *self._store.readable(), backend=self.backend)
        device_decided = isinstance(previous.chosen, Tensor)
        if device_decided:
            flag = self._graphs.state("flag")
            self._store.memorize_previous_novel_where(flag, self.beta, backend=self.backend)
        elif previous.chosen:
            self._store.append_novel_all(self.beta, backend=self.backend)
        probs = ops.soft_aggregate(self._padding.crop(object_probs), backend=self.backend)
        if device_decided:
            flag.copy_(self.trigger.decide(self.frame_index, frame, probs[1:]))
        self._memorize_current(query, probs)
        return frame, probs, self._scale.probs_out(probs)

    # -- frames and masks ------------------------------------------------------------------------

    def _start(self, input_height: int, input_width: int) -> None:
        self._scale = video_scale(
            self.internal_size,
            input_height,
            input_width,
            recommended=self.recommended_internal_size,
            device=self.device,
            dtype=self.dtype,
        )
        height, width = self._scale.internal_size
        stride = self.model.config.stride
        self._padding = Padding.to_multiple(height, width, stride)
        pixels = ((height + stride - 1) // stride) * ((width + stride - 1) // stride)
        config = self.model.config
        self._store = MemoryStore(
            key_dim=config.key_dim,
            value_dim=config.value_dim,
            frame_pixels=pixels,
            capacity=self.capacity if self.capacity is not None else default_capacity(pixels),
            device=self.device,
            dtype=self.dtype,
        )

    def _merge_mask(self, probs: Tensor | None, labels: Tensor, complete: bool = False) -> tuple[Tensor, list[int]]:
        """Apply a given mask: add new objects, replace the named ones (every object when ``complete``).

        Returns:
            The (K+1, H, W) probabilities after the merge and the indices of the named objects.
        """
        named_ids = [int(i) for i in torch.unique(labels).tolist() if i != 0]
        new_ids = [i for i in named_ids if i not in self._object_ids]
        if new_ids:
            self._object_ids += new_ids
            self._ids_table = None
            self._store.add_objects(len(new_ids))  # new buffers: captured graphs are stale
            if self._graphs is not None:
                self._graphs.clear()
        return merge_given_labels(probs, labels, self._object_ids, named_ids=self._object_ids if complete else None)
