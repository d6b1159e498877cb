"""Saving and restoring the engine's streaming state, given frames kept in memory, complete masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swiftcuda import InputError, PamOptions, PrepareOptions, Segmenter, prepare
from swiftcuda.inference import MemoryStore
from tests.models import random_swiftnet
from tests.videos import make_video

HEIGHT, WIDTH, FRAMES = 48, 64, 10
PIXELS = (HEIGHT // 16) * (WIDTH // 16)  # 12 memory pixels a frame


@pytest.fixture(scope="module")
def model():
    return random_swiftnet(seed=4)


@pytest.fixture(scope="module")
def video():
    return make_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, object_ids=(1, 2, 5), appear={5: 4}, seed=8)


def given_masks(video) -> dict[int, np.ndarray]:
    """Frame 0's objects 1 and 2, object 5 introduced at frame 4, frame 7 corrected (object 2 only)."""
    first = np.where(video.labels[0] == 5, 0, video.labels[0])
    late = np.where(video.labels[4] == 5, 5, 0)
    correction = np.where(video.labels[7] == 2, 2, 0)
    return {0: first, 4: late, 7: correction}


def make_segmenter(model, memory: str, internal_size) -> Segmenter:
    pam = PamOptions(update_threshold=0.5, max_gap=3)
    return Segmenter(
        prepare(model, PrepareOptions(tune=False)), memory=memory, mem_every=3, pam=pam, internal_size=internal_size
    )


def run(segmenter: Segmenter, video, masks, start: int = 0, stop: int = FRAMES, complete=()) -> list[torch.Tensor]:
    return [
        segmenter.step(video.frames[t], mask=masks.get(t), complete=t in complete).clone() for t in range(start, stop)
    ]


@pytest.mark.parametrize(
    ("memory", "internal_size"),
    [("official", None), ("pam", None), ("official", (32, 48))],
    ids=["official", "pam", "official-internal-size"],
)
def test_restore_then_continue_equals_never_interrupted(model, video, memory, internal_size):
    masks = given_masks(video)
    uninterrupted = run(make_segmenter(model, memory, internal_size), video, masks, complete={7})

    for cut in (1, 6):
        segmenter = make_segmenter(model, memory, internal_size)
        run(segmenter, video, masks, stop=cut, complete={7})
        state = segmenter.save_state()
        assert state.frame_index == cut
        # Wander off: other masks on the next frames change the memory, the objects and the trigger.
        detour = {t: np.where(video.labels[t] > 0, 9, 0) for t in range(cut, cut + 3)}
        run(segmenter, video, detour, start=cut, stop=cut + 3)
        segmenter.restore_state(state)
        resumed = run(segmenter, video, masks, start=cut, complete={7})
        for t, (got, expected) in enumerate(zip(resumed, uninterrupted[cut:], strict=True), start=cut):
            assert torch.equal(got, expected), f"{memory}: cut at {cut}, frame {t} differs"
        # The state is unchanged by what ran after it: restoring it again, into another segmenter
        # of the same model and options, gives the same frames again.
        other = make_segmenter(model, memory, internal_size)
        other.restore_state(state)
        again = run(other, video, masks, start=cut, complete={7})
        assert all(torch.equal(a, b) for a, b in zip(again, uninterrupted[cut:], strict=True)), (
            f"{memory}: second restore at {cut}"
        )
        assert other.object_ids == segmenter.object_ids and other.long_term_lengths == segmenter.long_term_lengths


def test_states_share_an_unchanged_long_term_memory(model, video):
    segmenter = make_segmenter(model, "official", None)  # mem_every=3: frames 0, 3, 6 and 9 update
    states = []
    for t in range(FRAMES):
        segmenter.step(video.frames[t], mask=video.labels[0] if t == 0 else None)
        states.append(segmenter.save_state())
    # Step t memorises frame t-1: the long-term memory changes at steps 1, 4 and 7 only.
    for t in range(1, FRAMES):
        shared = states[t].memory.long_term_keys is states[t - 1].memory.long_term_keys
        assert shared == (t not in (1, 4, 7)), f"step {t}"
        assert states[t].memory.previous_keys is not states[t - 1].memory.previous_keys
    assert states[2].memory.lengths == states[3].memory.lengths != states[4].memory.lengths
    assert states[5].num_bytes > 0
    # A state that shares its long-term memory restores exactly too.
    segmenter.restore_state(states[5])
    resumed = run(segmenter, video, {}, start=6)
    full = run(make_segmenter(model, "official", None), video, {0: video.labels[0]})
    assert all(torch.equal(a, b) for a, b in zip(resumed, full[6:], strict=True))


def test_restoring_a_fresh_state_forgets_the_video(model, video):
    segmenter = make_segmenter(model, "official", None)
    empty = segmenter.save_state()
    assert empty.frame_index == 0 and empty.memory is None and empty.num_bytes == 0
    segmenter.step(video.frames[0], mask=video.labels[0])
    segmenter.restore_state(empty)
    assert segmenter.object_ids == () and segmenter.memory is None
    with pytest.raises(InputError, match="first frame needs a mask"):
        segmenter.step(video.frames[1])


def test_a_state_of_another_memory_mode_is_refused(model, video):
    official = make_segmenter(model, "official", None)
    official.step(video.frames[0], mask=video.labels[0])
    with pytest.raises(ValueError, match="memory='official'"):
        make_segmenter(model, "pam", None).restore_state(official.save_state())


def test_a_complete_mask_gives_absent_objects(model, video):
    segmenter = make_segmenter(model, "official", None)
    segmenter.step(video.frames[0], mask=video.labels[0])
    segmenter.step(video.frames[1])
    only_two = np.where(video.labels[2] == 2, 2, 0)
    probs = segmenter.step(video.frames[2], mask=only_two, complete=True)
    ids = segmenter.object_ids
    for channel, object_id in enumerate(ids, start=1):
        expected = torch.from_numpy(only_two == object_id).float()
        assert torch.equal(probs[channel], expected), f"object {object_id} is exactly the mask (absent: zero)"
    segmenter.step(video.frames[3])
    assert segmenter.last_memorized == 2
    assert segmenter.memory.long_term_lengths == [2 * PIXELS] * len(ids), "every object kept frame 2 in full"
    # A background-only mask says every object is absent; without `complete` it is refused.
    background = np.zeros((HEIGHT, WIDTH), np.int64)
    probs = segmenter.step(video.frames[4], mask=background, complete=True)
    assert torch.equal(probs[0], torch.ones(HEIGHT, WIDTH)) and not probs[1:].any()
    with pytest.raises(InputError, match="no objects"):
        segmenter.step(video.frames[5], mask=background)
    with pytest.raises(InputError, match="no objects"):
        make_segmenter(model, "official", None).step(video.frames[0], mask=background, complete=True)


def test_an_incomplete_later_mask_keeps_the_objects_it_does_not_name(model, video):
    segmenter = make_segmenter(model, "official", None)
    segmenter.step(video.frames[0], mask=video.labels[0])
    predicted = segmenter.step(video.frames[1])
    only_two = np.where(video.labels[1] == 2, 2, 0)
    segmenter.reset()
    segmenter.step(video.frames[0], mask=video.labels[0])
    probs = segmenter.step(video.frames[1], mask=only_two)
    one = segmenter.object_ids.index(1) + 1
    free = torch.from_numpy(only_two == 0)
    assert torch.equal(probs[one][free], predicted[one][free]), "object 1 keeps its prediction outside the mask"


def _filled_store(capacity: int) -> MemoryStore:
    store = MemoryStore(
        key_dim=3, value_dim=2, frame_pixels=4, capacity=capacity, device=torch.device("cpu"), dtype=torch.float32
    )
    store.add_objects(2)
    return store


def _set_previous(store: MemoryStore, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    keys = torch.randn(store.num_objects, 3, store.frame_pixels, generator=generator)
    values = torch.randn(store.num_objects, 2, store.frame_pixels, generator=generator)
    store.set_previous(keys, values)
    return keys, values


def test_given_frames_are_never_evicted():
    generator = torch.Generator().manual_seed(11)
    store = _filled_store(capacity=16)
    first_keys, first_values = _set_previous(store, generator)
    store.memorize_previous_in_full([0, 1])
    novel = []
    for _ in range(2):
        keys, _ = _set_previous(store, generator)
        store.memorize_previous_novel([0, 1], beta=0.5, backend="reference")  # 2 entries each
        novel.append(keys)
    correction_keys, correction_values = _set_previous(store, generator)
    store.memorize_previous_in_full([0])  # object 0's second given frame, inserted after its first
    assert store.long_term_lengths == [4 + 4 + 4, 4 + 4]
    long_term = store.keys[:, :, 4:]
    assert torch.equal(long_term[0, :, :4], first_keys[0]) and torch.equal(long_term[0, :, 4:8], correction_keys[0])
    assert torch.equal(long_term[1, :, :4], first_keys[1])
    # Fill object 0 past its capacity: the oldest novel entries go, both given frames stay.
    for _ in range(4):
        _set_previous(store, generator)
        store.memorize_previous_novel([0, 1], beta=0.5, backend="reference")
    assert store.long_term_lengths == [16, 16]
    assert torch.equal(store.keys[0, :, 4:8], first_keys[0]) and torch.equal(store.keys[0, :, 8:12], correction_keys[0])
    assert torch.equal(store.values[0, :, 8:12], correction_values[0])
    assert torch.equal(store.keys[1, :, 4:8], first_keys[1]) and torch.equal(store.values[1, :, 4:8], first_values[1])
    # A third given frame still leaves room for one more frame; a fourth would not: refused, with the fix.
    third_keys, _ = _set_previous(store, generator)
    store.memorize_previous_in_full([0])
    assert store.long_term_lengths == [16, 16] and torch.equal(store.keys[0, :, 12:16], third_keys[0])
    assert torch.equal(store.keys[0, :, 4:8], first_keys[0]) and torch.equal(store.keys[0, :, 8:12], correction_keys[0])
    _set_previous(store, generator)
    with pytest.raises(InputError, match="full with its 4 given frames.*capacity of at least 20"):
        store.memorize_previous_in_full([0])


def test_memory_snapshot_restores_every_entry():
    generator = torch.Generator().manual_seed(12)
    store = _filled_store(capacity=16)
    _set_previous(store, generator)
    store.memorize_previous_in_full([0, 1])
    _set_previous(store, generator)
    store.memorize_previous_novel([1], beta=0.5, backend="reference")
    _set_previous(store, generator)
    snapshot = store.snapshot()
    copy = MemoryStore.from_snapshot(snapshot, torch.device("cpu"), torch.float32)
    assert copy.long_term_lengths == store.long_term_lengths == [4, 6]
    assert torch.equal(copy.long_term_length, store.long_term_length)
    for obj, length in enumerate(store.long_term_lengths):
        assert torch.equal(copy.keys[obj, :, : 4 + length], store.keys[obj, :, : 4 + length])
        assert torch.equal(copy.values[obj, :, : 4 + length], store.values[obj, :, : 4 + length])
    store.memorize_previous_novel([0, 1], beta=0.5, backend="reference")
    assert snapshot.lengths == (4, 6), "a snapshot does not follow the store"
    with pytest.raises(ValueError, match="float32"):
        MemoryStore.from_snapshot(snapshot, torch.device("cpu"), torch.float16)
