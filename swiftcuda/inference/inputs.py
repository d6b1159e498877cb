"""Turning user images and label masks into tensors the engine works with."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from swiftcuda.errors import InputError


def image_to_tensor(image: np.ndarray | Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """An RGB image as a (1, 3, H, W) tensor in [0, 1].

    Accepts an (H, W, 3) uint8 array or tensor (RGB), an (H, W) uint8 grayscale or (H, W, 4) uint8
    RGBA array (converted), or a (3, H, W) floating tensor already in [0, 1]. The uint8 data travels
    to the device before it is widened, which moves a quarter of the bytes.

    Raises:
        InputError: any other layout or dtype.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, Tensor):
        raise InputError(f"an image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if image.dtype == torch.uint8:
        if image.dim() == 2:
            image = image[:, :, None].expand(-1, -1, 3)
        elif image.dim() == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        if image.dim() != 3 or image.shape[2] != 3:
            raise InputError(
                f"a uint8 image must be (H, W, 3) RGB, (H, W) gray or (H, W, 4) RGBA, got {tuple(image.shape)}"
            )
        image = image.to(device, non_blocking=True).permute(2, 0, 1).to(dtype) / 255.0
    elif image.is_floating_point():
        if image.dim() != 3 or image.shape[0] != 3:
            raise InputError(f"a float image must be a (3, H, W) tensor in [0, 1], got {tuple(image.shape)}")
        image = image.to(device=device, dtype=dtype)
    else:
        raise InputError(f"an image must be uint8 (H, W, 3) or float (3, H, W), got {image.dtype}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise InputError(f"the image is empty (shape {tuple(image.shape)})")
    return image[None]


def check_frame_size(size: tuple[int, int], first: tuple[int, int], frame_index: int) -> None:
    """Raise an :class:`InputError` unless frame ``frame_index``'s (H, W) ``size`` is the video's first size."""
    if size != first:
        raise InputError(
            f"frame {frame_index} is {size[0]}x{size[1]} but the video started at "
            f"{first[0]}x{first[1]}: all frames must have one size"
        )


def given_labels(
    mask: np.ndarray | Tensor, device: torch.device, frame_size: tuple[int, int], allow_empty: bool = False
) -> Tensor:
    """A mask given with a frame of (H, W) ``frame_size``, as (H, W) int64 labels on ``device``.

    Raises:
        InputError: not an integer label map, another size than the frame's, or no object in it
            (unless ``allow_empty``).
    """
    labels = labels_to_tensor(mask, device)
    if tuple(labels.shape) != frame_size:
        raise InputError(
            f"the mask is {labels.shape[0]}x{labels.shape[1]} but the frame is "
            f"{frame_size[0]}x{frame_size[1]}: give a mask of the frame's size"
        )
    if not allow_empty and not labels.any():
        raise InputError("the mask has no objects (every pixel is 0, background): label objects 1, 2, ...")
    return labels


def labels_to_tensor(mask: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """An (H, W) integer label map (0 = background) as an int64 tensor on ``device``.

    Raises:
        InputError: the mask is not a 2-D integer array.
    """
    if isinstance(mask, np.ndarray):
        if mask.dtype.kind not in "iub":
            raise InputError(f"a mask must hold integer labels, got {mask.dtype}")
        mask = torch.from_numpy(mask.astype(np.int64, copy=False))
    if not isinstance(mask, Tensor) or mask.dim() != 2 or mask.is_floating_point() or mask.is_complex():
        shape = tuple(mask.shape) if hasattr(mask, "shape") else type(mask).__name__
        raise InputError(f"a mask must be an (H, W) integer label map, got {shape}")
    if (mask < 0).any():
        raise InputError("a mask must not hold negative labels")
    return mask.to(device=device, dtype=torch.int64)


def merge_given_labels(
    probs: Tensor | None, labels: Tensor, object_ids: list[int], named_ids: list[int] | None = None
) -> tuple[Tensor, list[int]]:
    """Probabilities with a given mask applied: its objects where it names them, nothing else there.

    Args:
        probs: (K'+1, H, W) probabilities of the first K' objects (K' <= K), or None.
        labels: (H, W) int64 given labels; every id in it is in ``object_ids``.
        object_ids: the K object ids in channel order.
        named_ids: the objects the mask gives (those it does not show are absent); None for the
            ids it shows.

    Returns:
        (K+1, H, W) float32 probabilities and the channel indices (0-based, objects only) the mask names.
    """
    if named_ids is None:
        named_ids = [int(i) for i in torch.unique(labels).tolist() if i != 0]
    objects = torch.zeros((len(object_ids), *labels.shape), device=labels.device)
    if probs is not None:
        # Pixels the mask gives to an object belong to no other object.
        objects[: probs.shape[0] - 1] = probs[1:] * (labels == 0)
    named = [object_ids.index(i) for i in named_ids]
    for index, object_id in zip(named, named_ids):
        objects[index] = labels == object_id
    background = (1.0 - objects.sum(dim=0, keepdim=True)).clamp_(min=0.0)
    return torch.cat([background, objects]), named
