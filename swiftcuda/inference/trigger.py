"""When a frame goes into the long-term memory: the official schedule and the PAM trigger.

A trigger sees every frame once, after its masks are predicted, and answers whether that frame's
most novel pixels should be appended to the long-term memory (which happens when the next frame is
processed, as in the official code). Frames with a given mask are memorised in full regardless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from swiftcuda import ops


class UpdateTrigger(Protocol):
    """Decides which frames update the long-term memory.

    ``decides_on_device`` says whether :meth:`decide` computes its answer on the device (without
    host synchronisation); a trigger that does not decides on the host in :meth:`observe`.
    """

    decides_on_device: bool

    def observe(self, frame_index: int, frame: Tensor, object_probs: Tensor) -> bool:
        """Whether frame ``frame_index`` updates the memory.

        Args:
            frame_index: index of the frame in the video.
            frame: (1, 3, H, W) the frame, RGB in [0, 1].
            object_probs: (O, H, W) float32 object probabilities (background excluded).
        """
        ...

    def decide(self, frame_index: int, frame: Tensor, object_probs: Tensor) -> Tensor:
        """The same decision as a 0-dim bool tensor on the frame's device."""
        ...

    def reset(self) -> None:
        """Forget everything seen (a new video starts)."""
        ...

    def save_state(self) -> object:
        """A copy of what the trigger has seen, for :meth:`restore_state` (never modified)."""
        ...

    def restore_state(self, state: object) -> None:
        """Continue from a state :meth:`save_state` returned (it stays usable for another restore)."""
        ...


class EveryNthFrame:
    """The official schedule: frames 0, n, 2n, ... update the memory."""

    decides_on_device = False

    def __init__(self, every: int = 5) -> None:
        if every < 1:
            raise ValueError(f"mem_every must be at least 1, got {every}")
        self.every = every

    def observe(self, frame_index: int, frame: Tensor, object_probs: Tensor) -> bool:
        return frame_index % self.every == 0

    def decide(self, frame_index: int, frame: Tensor, object_probs: Tensor) -> Tensor:
        return torch.tensor(self.observe(frame_index, frame, object_probs), device=frame.device)

    def reset(self) -> None:
        pass

    def save_state(self) -> None:
        return None  # the schedule depends on the frame index only

    def restore_state(self, state: None) -> None:
        pass


@dataclass(frozen=True)
class PamOptions:
    """Thresholds of the variation-aware trigger (see :class:`VariationAwareTrigger`).

    Attributes:
        frame_threshold: th_f, mean absolute RGB change (in [0, 1]) above which a pixel's image varied.
        mask_threshold: th_m, largest change of any object's probability above which a pixel's mask varied.
        update_threshold: P_th, accumulated variation that triggers an update.
        max_gap: the most frames that may pass without an update.
        min_area: fraction of the frame below which the object region is treated as this large,
            so that a few flickering pixels of a tiny object do not fire the trigger.

    The defaults were chosen with ``benchmarks/pam_vs_official.py`` on generated videos of the five
    mask sequences held out of the demo weights' training (432x240, the previous demo weights): with
    P_th = 3 PAM made 33 long-term updates where the every-5th-frame schedule made 46, at equal J&F
    (0.464); P_th = 1 updated twice as often as the schedule, P_th = 6 half as often at 0.002 lower
    J&F. With the shipped weights at 480x854: 38 updates against 46, J&F 0.517 against 0.513.
    Textured objects that move vary over most of their region every frame (V_t near 1), so P_th
    is roughly the number of such frames between updates.
    """

    frame_threshold: float = 0.1
    mask_threshold: float = 0.5
    update_threshold: float = 3.0
    max_gap: int = 10
    min_area: float = 0.005


class VariationAwareTrigger:
    """The Pixel-Adaptive Memory's variation-aware trigger (our formulas; the paper gives none).

    For frame t against frame t-1, per pixel x:

    - image variation ``v_f(x) = [mean_c |I_t(x, c) - I_{t-1}(x, c)| > th_f]``
    - mask variation ``v_m(x) = [max_o |p_t(x, o) - p_{t-1}(x, o)| > th_m]``
    - object region ``R = {x : max_o p_t(x, o) > 0.5 or max_o p_{t-1}(x, o) > 0.5}``

    The frame's variation is the fraction of the object region where either varied,
    ``V_t = |{x in R : v_f(x) or v_m(x)}| / max(|R|, min_area * H * W)``, so that changes in the
    background away from every object do not count. The running variation ``P += V_t``; the frame
    updates the memory when ``P >= P_th`` or when ``max_gap`` frames have passed since the last
    update, and P is then reset to zero.

    The running state lives in device tensors updated in place, so :meth:`decide` needs no host
    synchronisation and can be captured in a CUDA graph; :meth:`observe` is the same decision read
    back to the host.
    """

    decides_on_device = True

    def __init__(self, options: PamOptions | None = None, backend: str | None = None) -> None:
        self.options = options or PamOptions()
        self.backend = backend
        if self.options.max_gap < 1:
            raise ValueError(f"max_gap must be at least 1, got {self.options.max_gap}")
        self.reset()

    def reset(self) -> None:
        self._accumulated: Tensor | None = None  # 0-dim float32: P
        self._since_update: Tensor | None = None  # 0-dim int32: frames since the last update
        self._previous: tuple[Tensor, Tensor] | None = None  # last frame and its object probabilities

    def save_state(self) -> tuple[Tensor | None, ...]:
        """Copies of P, the frames since the last update, and the last frame and its probabilities."""
        previous = self._previous if self._previous is not None else (None, None)
        return tuple(_cloned(t) for t in (self._accumulated, self._since_update, *previous))

    def restore_state(self, state: tuple[Tensor | None, ...]) -> None:
        accumulated, since, frame, probs = (_cloned(t) for t in state)
        self._accumulated, self._since_update = accumulated, since
        self._previous = (frame, probs) if frame is not None else None

    @property
    def accumulated(self) -> float:
        """The running variation P (synchronises)."""
        return 0.0 if self._accumulated is None else float(self._accumulated)

    def _comparable(self, object_probs: Tensor) -> bool:
        return self._previous is not None and self._previous[1].shape == object_probs.shape

    def variation(self, frame: Tensor, object_probs: Tensor) -> Tensor | None:
        """V_t (0-dim float32 device tensor) of this frame against the last one observed, or None
        when there is no comparable last frame."""
        if not self._comparable(object_probs):
            return None
        prev_frame, prev_probs = self._previous
        counts = ops.frame_variation(
            frame[0],
            prev_frame[0],
            object_probs,
            prev_probs,
            frame_threshold=self.options.frame_threshold,
            mask_threshold=self.options.mask_threshold,
            backend=self.backend,
        )
        return counts[0] / counts[1].clamp(min=self.options.min_area * object_probs[0].numel())

    def decide(self, frame_index: int, frame: Tensor, object_probs: Tensor) -> Tensor:
        """Whether this frame updates the memory, as a 0-dim bool tensor computed on the device."""
        change = self.variation(frame, object_probs)
        if change is None:  # first frame, or the set of objects changed: start counting afresh
            self._previous = (frame.clone(), object_probs.clone())
            self._accumulated = torch.zeros((), device=frame.device)
            self._since_update = torch.zeros((), device=frame.device, dtype=torch.int32)
            return torch.zeros((), device=frame.device, dtype=torch.bool)
        # In place, so that the state keeps its storage (a captured graph reads and writes it).
        self._previous[0].copy_(frame)
        self._previous[1].copy_(object_probs)
        accumulated = self._accumulated + change
        since = self._since_update + 1
        fire = (accumulated >= self.options.update_threshold) | (since >= self.options.max_gap)
        self._accumulated.copy_(torch.where(fire, 0.0, accumulated))
        self._since_update.copy_(torch.where(fire, 0, since))
        return fire

    def observe(self, frame_index: int, frame: Tensor, object_probs: Tensor) -> bool:
        return bool(self.decide(frame_index, frame, object_probs))


def _cloned(tensor: Tensor | None) -> Tensor | None:
    return tensor.clone() if tensor is not None else None


def make_trigger(
    memory: str, mem_every: int = 5, pam: PamOptions | None = None, backend: str | None = None
) -> UpdateTrigger:
    """The trigger for a memory mode: "official" (every ``mem_every`` frames) or "pam"."""
    if memory == "official":
        return EveryNthFrame(mem_every)
    if memory == "pam":
        return VariationAwareTrigger(pam, backend=backend)
    raise ValueError(f"unknown memory mode {memory!r}: choose 'official' or 'pam'")
