"""Segmenting at an internal size: frames and masks scaled in, probabilities scaled back out.

The engine's cost grows with the pixel count, and weights have a size they segment best at (the
official ones were trained and evaluated at 480p; the demo weights on small crops). An internal
size runs the engine at that size whatever the input's: frames are shrunk with area interpolation
(each internal pixel the mean of the input pixels it covers), given masks with nearest neighbour
(keeping objects too small to survive it), and the probabilities are scaled back up bilinearly, so
labels, overlays and scores are always at the input's resolution.

Requests (``Segmenter(internal_size=...)``, ``--internal-size``):

- ``None``: the input's size, always (bit-identical to running without this module);
- an int ``S``: the shorter side becomes ``S``, the aspect ratio is kept; inputs whose shorter side
  is already ``S`` or less run at their own size (nothing is enlarged);
- ``(H, W)``: exactly that size;
- ``"auto"``: the weights' recommended size (:func:`recommended_internal_size`) if they have one,
  and in any case no larger than what the device handles well (:data:`CPU_MAX_SHORTER_SIDE` on a
  CPU; on a GPU, what fits in its free memory).

Internal sizes need not be multiples of the network's stride: the engine pads to it as it does for
any input.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from swiftcuda.errors import InputError

logger = logging.getLogger(__name__)

AUTO = "auto"
#: ``"auto"`` on a CPU shrinks inputs whose shorter side is larger than this (a 4K frame would
#: take tens of seconds and gigabytes per step; 1080p is the largest size users run on CPUs).
CPU_MAX_SHORTER_SIDE = 1080
#: Peak memory a float32 step adds per frame pixel: 400 bytes, measured on a CPU as the growth of
#: the process's peak from 540x960 to 1080x1920 frames (one object; the peak script of
#: tests/inference/test_internal_size.py). Scaled by the element size for other dtypes; used to keep
#: ``"auto"`` within a GPU's free memory, with :data:`GPU_MEMORY_SHARE` left for more objects.
STEP_BYTES_PER_PIXEL_FP32 = 400
#: Of a GPU's free memory, the share ``"auto"`` plans a step to use (the rest: the memory bank, the
#: caching allocator's slack, other work).
GPU_MEMORY_SHARE = 0.5
#: The smallest internal shorter side: below it the 1/16-resolution memory has almost no pixels.
MIN_SIDE = 32

InternalSize = int | tuple[int, int] | str | None


def check_request(request: InternalSize) -> InternalSize:
    """``request`` if it is a valid internal size request.

    Raises:
        InputError: anything else (a too small or non-integer size, an unknown word).
    """
    if request is None or request == AUTO:
        return request
    if isinstance(request, bool) or not isinstance(request, (int, tuple, list)):
        raise InputError(f"internal size {request!r} is not understood: give None, 'auto', an int or (H, W)")
    sides = (request,) if isinstance(request, int) else tuple(request)
    if len(sides) not in (1, 2) or not all(isinstance(s, int) and not isinstance(s, bool) for s in sides):
        raise InputError(f"internal size {request!r} is not understood: give None, 'auto', an int or (H, W)")
    if min(sides) < MIN_SIDE:
        raise InputError(f"internal size {request!r} is too small: give at least {MIN_SIDE} pixels a side")
    return request if isinstance(request, int) else (sides[0], sides[1])


def parse_internal_size(text: str) -> InternalSize:
    """A command-line internal size: ``auto``, ``none``, ``S`` (shorter side) or ``HxW``.

    Raises:
        InputError: text that is none of those (argparse turns it into a usage error).
    """
    word = text.strip().lower()
    if word in ("auto", "none"):
        return None if word == "none" else AUTO
    try:
        parts = [int(p) for p in word.split("x")]
    except ValueError:
        raise InputError(f"internal size {text!r}: give auto, none, a shorter side such as 240, or HxW") from None
    if len(parts) > 2:
        raise InputError(f"internal size {text!r}: give auto, none, a shorter side such as 240, or HxW")
    return check_request(parts[0] if len(parts) == 1 else (parts[0], parts[1]))


def shorter_side_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(H, W) scaled so that the shorter side is ``side``, aspect kept (the longer side rounded)."""
    scale = side / min(height, width)
    if height <= width:
        return side, max(side, round(width * scale))
    return max(side, round(height * scale)), side


def device_max_pixels(device: torch.device, dtype: torch.dtype) -> int | None:
    """The most input pixels a step should have on ``device``, or None for "no limit by memory"."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    bytes_per_pixel = STEP_BYTES_PER_PIXEL_FP32 * torch.finfo(dtype).bits / 32
    return int(free * GPU_MEMORY_SHARE / bytes_per_pixel)


def choose_internal_size(
    request: InternalSize,
    height: int,
    width: int,
    *,
    recommended: int | None = None,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
) -> tuple[tuple[int, int] | None, str]:
    """The size to segment (height, width) frames at.

    Args:
        request: see the module docstring.
        recommended: the weights' recommended shorter side, for ``"auto"``.
        device, dtype: where the engine runs, for ``"auto"``'s device limit.

    Returns:
        ((h, w) or None for "the input's size", why in a few words).
    """
    request = check_request(request)
    if request is None:
        return None, "the input's size"
    if isinstance(request, tuple):
        return (None if request == (height, width) else request), "as asked"
    side, why = (request, "as asked") if isinstance(request, int) else (recommended, "recommended for the weights")
    if request == AUTO:
        limit = CPU_MAX_SHORTER_SIDE if device.type == "cpu" else _gpu_side_limit(height, width, device, dtype)
        if limit is not None and min(height, width) > limit and (side is None or side > limit):
            side, why = limit, f"the largest this {device.type.upper()} runs well"
    if side is None or min(height, width) <= side:
        return None, "the input's size"
    return shorter_side_size(height, width, side), why


def _gpu_side_limit(height: int, width: int, device: torch.device, dtype: torch.dtype) -> int | None:
    max_pixels = device_max_pixels(device, dtype)
    if max_pixels is None or height * width <= max_pixels:
        return None
    return max(MIN_SIDE, int(min(height, width) * math.sqrt(max_pixels / (height * width))))


def video_scale(
    request: InternalSize,
    height: int,
    width: int,
    *,
    recommended: int | None = None,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
) -> Rescaler | SameSize:
    """The rescaling of a video whose frames are (height, width) (:func:`choose_internal_size`).

    Says so in one log line when the size changes: a warning when ``"auto"`` shrank an input too
    large for the device, or when an asked (h, w) turns the frames on their side (portrait for
    landscape frames: (w, h) was likely meant), else at INFO.
    """
    if isinstance(request, (tuple, list)) and len(request) == 2 and (request[0] - request[1]) * (height - width) < 0:
        logger.warning(
            "internal size %dx%d turns the %dx%d frames on their side: sizes are height x width, so %dx%d "
            "keeps their orientation",
            request[0],
            request[1],
            height,
            width,
            request[1],
            request[0],
        )
    internal, why = choose_internal_size(request, height, width, recommended=recommended, device=device, dtype=dtype)
    if internal is None:
        return SameSize((height, width))
    automatic = request == AUTO
    (logger.warning if automatic and why.endswith("runs well") else logger.info)(
        "segmenting %dx%d frames at %dx%d (%s)%s",
        height,
        width,
        *internal,
        why,
        "; internal_size=None (--internal-size none) keeps the input's size" if automatic else "",
    )
    return Rescaler((height, width), internal)


@dataclass(frozen=True)
class Rescaler:
    """Moves tensors between the input's size and the internal size.

    Attributes:
        input_size: (H, W) of the frames given.
        internal_size: (h, w) the engine runs at.
    """

    input_size: tuple[int, int]
    internal_size: tuple[int, int]

    def frame_in(self, frame: Tensor) -> Tensor:
        """(B, 3, H, W) float frames -> (B, 3, h, w): area when shrinking, bilinear when enlarging."""
        shrinking = self.internal_size[0] * self.internal_size[1] < self.input_size[0] * self.input_size[1]
        if shrinking:
            return F.interpolate(frame, size=self.internal_size, mode="area")
        return F.interpolate(frame, size=self.internal_size, mode="bilinear", align_corners=False)

    def mask_in(self, labels: Tensor) -> Tensor:
        """(H, W) int64 labels -> (h, w) by nearest neighbour, every object of ``labels`` kept.

        An object nearest neighbour would lose gets the one internal pixel it covers most (with a
        warning: it is tracked from a single pixel).
        """
        scaled = F.interpolate(labels[None, None].float(), size=self.internal_size, mode="nearest-exact")
        scaled = scaled[0, 0].to(labels.dtype)
        given = torch.unique(labels)
        kept = torch.unique(scaled)
        for object_id in (int(i) for i in given.tolist() if i != 0 and i not in kept):
            cover = F.interpolate((labels == object_id)[None, None].float(), size=self.internal_size, mode="area")
            scaled.view(-1)[int(cover.argmax())] = object_id
            logger.warning(
                "object %d covers %d pixels, less than one pixel at the internal size %dx%d: it is kept as "
                "one pixel; give a larger internal size to track it well",
                object_id,
                int((labels == object_id).sum()),
                *self.internal_size,
            )
        return scaled

    def probs_out(self, probs: Tensor) -> Tensor:
        """(C, h, w) probabilities -> (C, H, W), bilinear (so each pixel's probabilities still sum to 1)."""
        return F.interpolate(probs[None], size=self.input_size, mode="bilinear", align_corners=False)[0]


class SameSize:
    """The identity :class:`Rescaler`, for a video run at its own size: everything passes unchanged."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.input_size = self.internal_size = size

    def frame_in(self, frame: Tensor) -> Tensor:
        return frame

    def mask_in(self, labels: Tensor) -> Tensor:
        return labels

    def probs_out(self, probs: Tensor) -> Tensor:
        return probs
