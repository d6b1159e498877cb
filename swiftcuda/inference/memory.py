"""Per-object memory in fixed-capacity buffers with a first-frame-preserving eviction policy.

Layout of each object's row, along the entry axis::

    [ previous frame: P entries | long-term memory: up to `capacity` entries ]
                                  [ first frame (kept) | later entries, oldest first ]

The previous frame's slot is rewritten every step and the long-term part grows by the memory
update, so one memory read covers both without concatenating anything. The read sees
``P + long_term_length[o]`` entries of row o: objects added later have shorter memories.

When an append would overflow the capacity, the oldest entries after the object's given frames are
dropped (FIFO). Given frames (the first frame, and any later frame whose mask names the object)
hold the only ground truth the engine ever sees, so they are never evicted: they form a protected
prefix of the long-term memory, a later given frame inserted at its end::

    [ previous frame | given frames (protected) | novel entries, oldest first ]
 Lengths are kept twice: on the device (what the kernels read and advance) and on the host.
The host copy is exact without synchronising because every append's size is known in advance.

When the decision to update is itself on the device (the PAM trigger in a captured CUDA graph),
:meth:`MemoryStore.memorize_previous_novel_where` appends and evicts under a device flag with no
host synchronisation; the host copy of the lengths is then refreshed only when next needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from swiftcuda import ops
from swiftcuda.errors import InputError

#: Long-term entries per object when no capacity is given (at least four frames' worth).
DEFAULT_CAPACITY = 16384


def default_capacity(frame_pixels: int) -> int:
    """The default long-term capacity for frames of ``frame_pixels`` memory pixels."""
    return max(DEFAULT_CAPACITY, 4 * frame_pixels)


def check_room_for_given(protected: int, incoming: int, frame_pixels: int, capacity: int) -> None:
    """Raise an :class:`InputError` unless ``incoming`` entries fit in one object's long-term
    ``capacity`` beside its ``protected`` given-frame entries (which are never evicted)."""
    if protected + incoming > capacity:
        raise InputError(
            f"an object's memory of {capacity} entries is full with its {protected // frame_pixels} given frames "
            f"of {frame_pixels} memory pixels: give masks on fewer frames, or a capacity of at least "
            f"{protected + incoming} (--capacity, Segmenter(capacity=...))"
        )


def _contiguous_runs(indices: list[int]) -> list[slice]:
    """Sorted indices grouped into slices of consecutive values (so buffers are sliced as views)."""
    runs: list[slice] = []
    for index in sorted(indices):
        if runs and runs[-1].stop == index:
            runs[-1] = slice(runs[-1].start, index + 1)
        else:
            runs.append(slice(index, index + 1))
    return runs


#: Rows of the buffers start on multiples of this many entries (16-byte aligned rows for every
#: dtype, and row strides that Triton specialises as divisible by 16: vectorised tile loads).
ROW_ALIGN = 16


def _padded_zeros(objects: int, channels: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Zeros (objects, channels, width) whose rows are ``ROW_ALIGN``-entry aligned: a view of a
    buffer padded to a multiple of ``ROW_ALIGN`` columns (the padding is never read)."""
    padded = -(-width // ROW_ALIGN) * ROW_ALIGN
    return torch.zeros((objects, channels, padded), device=device, dtype=dtype)[:, :, :width]


def _grown(buffer: Tensor, count: int) -> Tensor:
    """``buffer`` (O, C, W) with ``count`` zero objects appended, rows aligned likewise."""
    objects, channels, width = buffer.shape
    grown = _padded_zeros(objects + count, channels, width, buffer.device, buffer.dtype)
    grown[:objects] = buffer
    return grown


@dataclass(frozen=True, eq=False)
class MemorySnapshot:
    """A copy of a :class:`MemoryStore`'s contents, taken by :meth:`MemoryStore.snapshot`.

    Its tensors are never written: a store restored from it copies them.

    Attributes:
        previous_keys: (O, Ck, P) the previous frame's slot; ``previous_values`` (O, Cv, P).
        long_term_keys: (O, Ck, L) the first L long-term entries of every object, L the longest
            object's length (an object's entries past its own length are never read);
            ``long_term_values`` (O, Cv, L).
        lengths: long-term entries per object.
        protected: of those, the given frames' entries (never evicted).
        capacity: long-term entries per object.
    """

    previous_keys: Tensor
    previous_values: Tensor
    long_term_keys: Tensor
    long_term_values: Tensor
    lengths: tuple[int, ...]
    protected: tuple[int, ...]
    capacity: int

    @property
    def frame_pixels(self) -> int:
        return self.previous_keys.shape[2]

    @property
    def num_bytes(self) -> int:
        """Bytes held by its tensors (shared ones included)."""
        tensors = (self.previous_keys, self.previous_values, self.long_term_keys, self.long_term_values)
        return sum(t.numel() * t.element_size() for t in tensors)


class MemoryStore:
    """Keys and values of every object's memory.

    Attributes:
        keys: (O, Ck, P + capacity) key buffer (rows ``ROW_ALIGN``-entry aligned: the row stride is
            P + capacity rounded up to a multiple of 16).
        values: (O, Cv, P + capacity) value buffer, likewise.
        long_term_length: (O,) int32 device tensor, valid long-term entries per object.
    """

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        frame_pixels: int,
        capacity: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        if capacity < 2 * frame_pixels:
            raise InputError(
                f"a memory capacity of {capacity} entries cannot hold two frames of {frame_pixels} "
                f"memory pixels: use a capacity of at least {2 * frame_pixels}"
            )
        self.frame_pixels = frame_pixels
        self.capacity = capacity
        self.keys = _padded_zeros(0, key_dim, frame_pixels + capacity, device, dtype)
        self.values = _padded_zeros(0, value_dim, frame_pixels + capacity, device, dtype)
        self.long_term_length = torch.zeros(0, device=device, dtype=torch.int32)
        self._host_length: list[int] | None = []  # None: changed on the device since last read
        self._first_length: list[int] = []
        # Device copies for the device-side eviction (rebuilt only when objects or first frames change,
        # so that no host-to-device copy happens inside a captured graph).
        self._first_length_device = torch.zeros(0, device=device, dtype=torch.int32)
        self._entry_index = torch.arange(capacity, device=device)
        self._last_snapshot: MemorySnapshot | None = None  # the latest one taken of or restored into this store

    @property
    def num_objects(self) -> int:
        return self.keys.shape[0]

    @property
    def long_term_lengths(self) -> list[int]:
        """Long-term entries held by each object (synchronises only after a device-decided update)."""
        return list(self._lengths())

    def _lengths(self) -> list[int]:
        if self._host_length is None:
            self._host_length = [int(n) for n in self.long_term_length.tolist()]
        return self._host_length

    def add_objects(self, count: int) -> None:
        """Append ``count`` objects with empty memories."""
        self._lengths()
        self.keys = _grown(self.keys, count)
        self.values = _grown(self.values, count)
        self.long_term_length = torch.cat([self.long_term_length, self.long_term_length.new_zeros(count)])
        self._host_length += [0] * count
        self._first_length += [0] * count
        self._first_length_device = self.long_term_length.new_tensor(self._first_length)

    def set_previous(self, keys: Tensor, values: Tensor) -> None:
        """Store the previous frame's keys (O, Ck, P) and values (O, Cv, P) in its slot."""
        self.keys[:, :, : self.frame_pixels] = keys
        self.values[:, :, : self.frame_pixels] = values

    def readable(self) -> tuple[Tensor, Tensor, Tensor]:
        """Buffers and valid lengths for a read: previous frame plus long-term memory.

        Returns:
            keys (O, Ck, P + capacity), values (O, Cv, P + capacity), n_valid (O,) int32.
        """
        return self.keys, self.values, self.long_term_length + self.frame_pixels

    def _make_room(self, obj: int, incoming: int) -> None:
        """Evict object ``obj``'s oldest entries after its given frames until ``incoming`` fit."""
        length, first = self._lengths()[obj], self._first_length[obj]
        check_room_for_given(first, incoming, self.frame_pixels, self.capacity)
        excess = length + incoming - self.capacity
        if excess <= 0:
            return
        start = self.frame_pixels + first
        kept = slice(start + excess, self.frame_pixels + length)
        moved = kept.stop - kept.start
        # clone(): the source and destination ranges overlap.
        self.keys[obj, :, start : start + moved] = self.keys[obj, :, kept].clone()
        self.values[obj, :, start : start + moved] = self.values[obj, :, kept].clone()
        self._host_length[obj] = length - excess
        self.long_term_length[obj] -= excess

    def memorize_previous_in_full(self, objects: list[int]) -> None:
        """Keep every pixel of the previous frame (its mask was given) in these objects' long-term
        memories, protected: inserted after their given frames, before their novel entries, and
        never evicted.

        Raises:
            InputError: the given frames would leave an object's memory no room for one more frame.
        """
        pixels = self.frame_pixels
        for obj in objects:
            # After it, one more frame must still fit: the novel appends need that room.
            check_room_for_given(self._first_length[obj] + pixels, pixels, pixels, self.capacity)
            self._make_room(obj, pixels)
            first, length = self._first_length[obj], self._lengths()[obj]
            start, end = pixels + first, pixels + length
            for buffer in (self.keys, self.values):
                if end > start:  # the novel entries move up by one frame (clone: the ranges overlap)
                    buffer[obj, :, start + pixels : end + pixels] = buffer[obj, :, start:end].clone()
                buffer[obj, :, start : start + pixels] = buffer[obj, :, :pixels]
            self._first_length[obj] = first + pixels
            self._first_length_device[obj] = first + pixels
            self._host_length[obj] += pixels
            self.long_term_length[obj] += pixels

    def memorize_previous_novel(self, objects: list[int], beta: float, backend: str | None = None) -> None:
        """Append the previous frame's most novel pixels to these objects' long-term memories."""
        pixels = self.frame_pixels
        count = ops.novel_pixel_count(pixels, beta)
        for obj in objects:
            self._make_room(obj, count)
        self._append_novel(_contiguous_runs(objects), beta, backend)
        for obj in objects:
            self._host_length[obj] += count

    def make_room_for_novel(self, beta: float) -> None:
        """Evict, on the host's count, what every object needs to take a novel-pixel append."""
        count = ops.novel_pixel_count(self.frame_pixels, beta)
        for obj in range(self.num_objects):
            self._make_room(obj, count)

    def append_novel_all(self, beta: float, backend: str | None = None) -> None:
        """Append every object's most novel pixels (device work only; room must have been made)."""
        self._append_novel([slice(0, self.num_objects)], beta, backend)

    def note_novel_appended(self, beta: float) -> None:
        """Account on the host for an :meth:`append_novel_all` that ran (in a graph)."""
        count = ops.novel_pixel_count(self.frame_pixels, beta)
        lengths = self._lengths()
        for obj in range(self.num_objects):
            lengths[obj] = min(lengths[obj] + count, self.capacity)

    def memorize_previous_novel_where(self, flag: Tensor, beta: float, backend: str | None = None) -> None:
        """Append every object's most novel pixels of the previous frame when ``flag`` is true.

        The decision, the eviction and the append all happen on the device, without host
        synchronisation, so this can run inside a captured CUDA graph. Every object must already
        hold its first frame.

        Args:
            flag: 0-dim bool tensor on the memory's device.
        """
        count = ops.novel_pixel_count(self.frame_pixels, beta)
        lengths = self.long_term_length
        excess = ((lengths + count - self.capacity).clamp(min=0) * flag).to(lengths.dtype)
        self._evict_on_device(excess)
        before = lengths.clone()
        self._append_novel([slice(0, self.num_objects)], beta, backend)
        lengths.copy_(torch.where(flag, lengths, before))
        self._host_length = None

    def _evict_on_device(self, excess: Tensor) -> None:
        """Drop ``excess[o]`` oldest entries after each object's first frame (a gather, no sync)."""
        first = self._first_length_device
        index = self._entry_index[None, :]
        source = torch.where(index >= first[:, None], index + excess[:, None], index).clamp_(max=self.capacity - 1)
        for buffer in (self.keys, self.values):
            long_term = buffer[:, :, self.frame_pixels :]
            long_term.copy_(torch.gather(long_term, 2, source[:, None, :].expand(-1, buffer.shape[1], -1)))
        self.long_term_length -= excess

    def update_views(self, run: slice) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The arguments of the memory update of objects ``run``: long-term keys (O, Ck, capacity)
        and values (O, Cv, capacity), their lengths (O,), the previous frame's keys (O, Ck, P) and
        values (O, Cv, P). The previous frame's slot and the long-term part are disjoint views of
        one buffer."""
        pixels = self.frame_pixels
        return (
            self.keys[run, :, pixels:],
            self.values[run, :, pixels:],
            self.long_term_length[run],
            self.keys[run, :, :pixels],
            self.values[run, :, :pixels],
        )

    def _append_novel(self, runs: list[slice], beta: float, backend: str | None) -> None:
        for run in runs:
            ops.memory_update_(*self.update_views(run), beta=beta, backend=backend)

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self) -> MemorySnapshot:
        """A copy of the memory, unaffected by what the store does next.

        The long-term part is shared with this store's previous snapshot (or the one it was restored
        from) when it cannot have changed since: the same objects, lengths and given frames, and no
        object at capacity (below capacity the long-term memory only grows, so equal lengths mean
        equal entries). A video then costs one previous-frame slot per snapshot, and a long-term
        copy only per memory update.
        """
        lengths, protected = tuple(self._lengths()), tuple(self._first_length)
        last = self._last_snapshot
        pixels = self.frame_pixels
        if (
            last is not None
            and last.lengths == lengths
            and last.protected == protected
            and all(length < self.capacity for length in lengths)
        ):
            long_term_keys, long_term_values = last.long_term_keys, last.long_term_values
        else:
            stop = pixels + max(lengths, default=0)
            long_term_keys = self.keys[:, :, pixels:stop].clone()
            long_term_values = self.values[:, :, pixels:stop].clone()
        self._last_snapshot = MemorySnapshot(
            previous_keys=self.keys[:, :, :pixels].clone(),
            previous_values=self.values[:, :, :pixels].clone(),
            long_term_keys=long_term_keys,
            long_term_values=long_term_values,
            lengths=lengths,
            protected=protected,
            capacity=self.capacity,
        )
        return self._last_snapshot

    @classmethod
    def from_snapshot(cls, snapshot: MemorySnapshot, device: torch.device, dtype: torch.dtype) -> MemoryStore:
        """A store holding what ``snapshot`` holds, in new buffers on ``device``.

        Raises:
            ValueError: the snapshot's tensors are not of ``dtype``.
        """
        if snapshot.previous_keys.dtype != dtype:
            raise ValueError(f"the memory snapshot holds {snapshot.previous_keys.dtype}, this engine runs {dtype}")
        objects, key_dim, pixels = snapshot.previous_keys.shape
        store = cls(
            key_dim=key_dim,
            value_dim=snapshot.previous_values.shape[1],
            frame_pixels=pixels,
            capacity=snapshot.capacity,
            device=device,
            dtype=dtype,
        )
        store.add_objects(objects)
        store.keys[:, :, :pixels] = snapshot.previous_keys
        store.values[:, :, :pixels] = snapshot.previous_values
        stop = pixels + snapshot.long_term_keys.shape[2]
        store.keys[:, :, pixels:stop] = snapshot.long_term_keys
        store.values[:, :, pixels:stop] = snapshot.long_term_values
        store.long_term_length.copy_(torch.tensor(snapshot.lengths, dtype=torch.int32))
        store._host_length = list(snapshot.lengths)
        store._first_length = list(snapshot.protected)
        store._first_length_device = store.long_term_length.new_tensor(store._first_length)
        store._last_snapshot = snapshot
        return store
