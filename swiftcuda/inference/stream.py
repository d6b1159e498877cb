"""What every segmenter of one video exposes, whatever runs its steps (the torch engine, ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from swiftcuda.errors import InputError
from swiftcuda.inference.inputs import check_frame_size, given_labels, image_to_tensor, merge_given_labels
from swiftcuda.inference.labels import to_labels
from swiftcuda.inference.rescale import Rescaler, SameSize


class VideoStream:
    """The objects and sizes of the video being segmented, and labels from its probabilities.

    Subclasses implement ``_start``, keep ``_object_ids`` (ids in channel order), ``_scale`` (the
    video's rescaling, None before the first frame), ``device`` and ``frame_index``, and reset
    ``_ids_table`` to None when the objects change.
    """

    _object_ids: list[int]
    _scale: Rescaler | SameSize | None
    _ids_table: Tensor | None
    device: torch.device
    frame_index: int

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Object ids in channel order: channel i + 1 of a step's output is object_ids[i]."""
        return tuple(self._object_ids)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) of this video's frames (and of every output), or None before the first frame."""
        return self._scale.input_size if self._scale is not None else None

    @property
    def running_size(self) -> tuple[int, int] | None:
        """(h, w) the steps run this video at (see ``internal_size``), or None before the first frame."""
        return self._scale.internal_size if self._scale is not None else None

    def _start(self, height: int, width: int) -> None:
        """Set the video up for (height, width) frames (sets ``_scale``)."""
        raise NotImplementedError

    def _prepare(self, image: np.ndarray | Tensor, mask: np.ndarray | Tensor | None) -> Tensor:
        """Check a frame against the video (the first one starts it) and return it as
        (1, 3, H, W) float32 on the device, at the input's size."""
        # Frames stay float32 until the trunk has normalised them (then cast to the model's dtype):
        # cheaper than normalising a channels-last half-precision map, and more precise.
        frame = image_to_tensor(image, self.device, torch.float32)
        height, width = frame.shape[-2:]
        if self._scale is None:
            if mask is None:
                raise InputError("the first frame needs a mask: call step(image, mask=labels)")
            self._start(height, width)
        else:
            check_frame_size((height, width), self._scale.input_size, self.frame_index)
        return frame

    def _scaled_inputs(
        self, frame: Tensor, mask: np.ndarray | Tensor | None, allow_empty: bool = False
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """A checked frame and mask at the internal size, and the mask at the input's size.

        Args:
            allow_empty: accept a mask of background only.

        Returns:
            (1, 3, h, w) frame, (h, w) int64 labels or None, (H, W) int64 labels or None.
        """
        if mask is None:
            return self._scale.frame_in(frame), None, None
        labels = given_labels(mask, self.device, self._scale.input_size, allow_empty=allow_empty)
        return self._scale.frame_in(frame), self._scale.mask_in(labels), labels

    def _output(self, probs: Tensor, given: Tensor | None, complete: bool = False) -> Tensor:
        """(K+1, h, w) probabilities at the input's size; a given mask holds there exactly (for every
        object when it is ``complete``)."""
        if isinstance(self._scale, SameSize):
            return probs
        probs = self._scale.probs_out(probs)
        if given is None:
            return probs
        return merge_given_labels(probs, given, self._object_ids, named_ids=self._object_ids if complete else None)[0]

    def to_labels(self, probs: Tensor) -> Tensor:
        """(K+1, H, W) probabilities -> (H, W) int64 map of object ids (0 = background)."""
        if self._ids_table is None or self._ids_table.device != probs.device:
            self._ids_table = torch.tensor([0, *self._object_ids], device=probs.device)
        return to_labels(probs, self._ids_table)
