"""Propagation: the engine runs through the video in a background thread while the page stays live.

One run at a time. Before every frame t it computes, the propagator keeps the engine's state
(:meth:`Segmenter.save_state`), so that a correction at frame k resumes from the state before k
without computing frames 0..k-1 again. States share the long-term memory while it does not change,
so keeping one per frame costs about one frame's memory keys and values a frame; past a byte budget
every other state is dropped, and a run that resumes where no state is kept steps the engine from
the nearest earlier one (or the chain's start) without touching those frames' masks. After the
server restarts there are no states: the first run steps from the chain's start to where it resumes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator

import torch

from swiftcuda.annotate.session import AnnotationSession, Plan
from swiftcuda.errors import SwiftcudaError
from swiftcuda.inference import Segmenter, SegmenterState
from swiftcuda.io.frames import Frame

logger = logging.getLogger(__name__)

#: Bytes of engine states kept for corrections (beyond it, every other state is dropped).
DEFAULT_STATE_BUDGET = 2 << 30
#: Frames decoded ahead of the engine.
PREFETCH = 3
#: Frames the speed is measured over.
SPEED_WINDOW = 30


class _Prefetched:
    """Frames decoded in a thread, ``PREFETCH`` ahead of the consumer (decoding overlaps the steps)."""

    _END = object()

    def __init__(self, frames: Iterator[Frame]) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(frames,), name="swiftcuda-decode", daemon=True)
        self._thread.start()

    def _fill(self, frames: Iterator[Frame]) -> None:
        try:
            for frame in frames:
                if not self._put(frame):
                    return
            self._put(self._END)
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(error)

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


class Propagator:
    """Runs the engine over a session's video, one run at a time, in a background thread.

    Args:
        session: the session whose masks it reads and writes.
        segmenter: the engine (used by this propagator only).
        state_budget: bytes of engine states kept for corrections.
    """

    def __init__(
        self, session: AnnotationSession, segmenter: Segmenter, state_budget: int = DEFAULT_STATE_BUDGET
    ) -> None:
        self.session = session
        self.segmenter = segmenter
        self.state_budget = state_budget
        self._states: dict[int, SegmenterState] = {}  # frame t -> the engine's state before frame t
        self._state_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: dict = {"running": False, "error": None, "finished": None}
        self._times: deque[float] = deque(maxlen=SPEED_WINDOW)

    # -- control -------------------------------------------------------------------------------

    def start(self) -> Plan:
        """Start propagating (see :meth:`AnnotationSession.plan` for where); returns the plan.

        Raises:
            RequestError / Conflict: nothing to propagate, or a run in progress.
        """
        with self._lock:
            plan = self.session.plan()
            self.session.begin_run(plan)  # refuses a second run
            self._stop.clear()
            self._times.clear()
            self._status = {
                "running": True,
                "error": None,
                "finished": None,
                "start": plan.start,
                "chain_start": plan.chain_start,
                "frame": None,
                "replaying": False,
                "done": 0,
                "total": len(self.session.frames) - plan.start,
            }
            self._thread = threading.Thread(target=self._run, args=(plan,), name="swiftcuda-propagate", daemon=True)
            self._thread.start()
            return plan

    def stop(self, wait: bool = False) -> None:
        """Ask the run to stop after the frame in progress (its masks are kept)."""
        self._stop.set()
        thread = self._thread
        if wait and thread is not None:
            thread.join()

    @property
    def running(self) -> bool:
        return self._status["running"]

    def status(self) -> dict:
        """The run's progress: frames done of total, frames per second, seconds left."""
        status = dict(self._status)
        times = list(self._times)
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else None
        status["fps"] = fps
        left = status.get("total", 0) - status.get("done", 0)
        status["eta_s"] = left / fps if fps and status["running"] else None
        status["stopping"] = status["running"] and self._stop.is_set()
        return status

    # -- the run -------------------------------------------------------------------------------

    def _run(self, plan: Plan) -> None:
        frames = None
        try:
            first = self._resume_point(plan)
            frames = _Prefetched(self.session.frames.iter_from(first))
            with torch.inference_mode():
                for frame in frames:
                    if self._stop.is_set():
                        self._status["finished"] = "stopped"
                        break
                    self._step(frame, plan)
                else:
                    self._status["finished"] = "completed"
        except SwiftcudaError as error:
            self._status["error"] = str(error)
        except Exception as error:  # the server stays up and the page says what happened
            logger.exception("propagation failed")
            self._status["error"] = f"the engine stopped: {type(error).__name__}: {error}"
        finally:
            if frames is not None:
                frames.close()
            self._status["running"] = False
            self.session.end_run()  # last: a new run may start from here on

    def _resume_point(self, plan: Plan) -> int:
        """Put the engine in its state before the first frame to step; returns that frame."""
        segmenter = self.segmenter
        if plan.fresh:
            self._forget(lambda t: True)
        else:
            self._forget(lambda t: t > plan.start)  # made by runs of an older chain
        earlier = [t for t in self._states if plan.chain_start < t <= plan.start]
        if plan.fresh or not earlier:
            segmenter.reset()
            first = plan.chain_start
        else:
            first = max(earlier)
            segmenter.restore_state(self._states[first])
        if first < plan.start:
            self._status["replaying"] = True
            logger.info("stepping the engine through frames %d-%d to resume at %d", first, plan.start - 1, plan.start)
        return first

    def _step(self, frame: Frame, plan: Plan) -> None:
        segmenter, t = self.segmenter, frame.index
        probs = segmenter.step(frame.image, mask=self.session.given_mask(t), complete=True)
        self._remember(t + 1, segmenter.save_state())
        if t < plan.start:  # resuming: these frames keep their masks
            return
        labels = segmenter.to_labels(probs).to(torch.uint8).cpu().numpy()
        self.session.publish(t, labels)
        self._times.append(time.perf_counter())
        self._status.update(frame=t, replaying=False, done=t - plan.start + 1)

    # -- kept states ---------------------------------------------------------------------------

    def _remember(self, index: int, state: SegmenterState) -> None:
        self._states[index] = state
        self._state_bytes += _own_bytes(state, self._states.get(index - 1))
        if self._state_bytes > self.state_budget:
            self._thin()

    def _forget(self, which) -> None:
        for index in [t for t in self._states if which(t)]:
            del self._states[index]
        self._recount()

    def _thin(self) -> None:
        """Drop every other kept state (keeping the latest), until the states fit the budget."""
        while self._state_bytes > self.state_budget and len(self._states) > 1:
            kept = sorted(self._states)
            for index in kept[-2::-2]:
                del self._states[index]
            self._recount()
        logger.info("kept %d engine states (%.0f MiB)", len(self._states), self._state_bytes / 2**20)

    def _recount(self) -> None:
        seen: set[int] = set()
        total = 0
        for state in self._states.values():
            if state.memory is None:
                continue
            memory = state.memory
            for tensor in (
                memory.previous_keys,
                memory.previous_values,
                memory.long_term_keys,
                memory.long_term_values,
            ):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
        self._state_bytes = total

    @property
    def kept_states(self) -> list[int]:
        """The frames before which the engine's state is kept."""
        return sorted(self._states)


def _own_bytes(state: SegmenterState, previous: SegmenterState | None) -> int:
    """Bytes ``state`` adds to ``previous`` (its long-term memory may be shared with it)."""
    if state.memory is None:
        return 0
    memory = state.memory
    tensors = [memory.previous_keys, memory.previous_values]
    if previous is None or previous.memory is None or previous.memory.long_term_keys is not memory.long_term_keys:
        tensors += [memory.long_term_keys, memory.long_term_values]
    return sum(t.numel() * t.element_size() for t in tensors)
