"""Loading SwiftNet checkpoints: the official release and this project's own.

The official ``swiftnet_resnet18_old.pth`` was saved from ``nn.DataParallel``, so its keys start
with ``module.``. Checkpoints are accepted with or without that prefix, as a bare state dict or under
a ``state_dict`` / ``model`` key, and are always read with ``weights_only=True``.

A checkpoint may carry this project's metadata beside its state dict, under a ``swiftcuda`` key:
``{"state_dict": ..., "swiftcuda": {"internal_size": 240}}`` records the shorter side the weights
segment best at (:func:`recommended_internal_size`); the engine runs at it unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from swiftcuda.errors import InputError, WeightsError
from swiftcuda.model import CONFIGS, SwiftNet
from swiftcuda.precision import resolve_precision

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model")
_PREFIX = "module."
#: A tensor whose input-channel count tells the variants apart (layer3's channels).
_VARIANT_PROBE = "KV_Q_r4.Key.weight"
_MAX_LISTED = 5
_METADATA_KEY = "swiftcuda"
#: The recommended internal size of checkpoints that record none, such as the official release:
#: the paper trains and evaluates at 480p.
PAPER_INTERNAL_SIZE = 480

#: Name that :func:`load_model` resolves to the weights shipped with the package.
DEMO = "demo"
DEMO_NOTICE = (
    "using the demo weights shipped with swiftcuda, trained on synthetic videos only: "
    "pass --weights for the official or your own checkpoint"
)


def demo_weights_path() -> Path:
    """The demo checkpoint inside the package (a half-precision SwiftNet-R18 state dict)."""
    return Path(str(resources.files("swiftcuda") / "assets" / "demo_r18.pt"))


def resolve_weights(source: str | os.PathLike) -> Path:
    """A checkpoint path; ``"demo"`` names the weights shipped with the package.

    Raises:
        WeightsError: "demo" was asked but this installation has no demo weights.
    """
    if str(source) != DEMO:
        return Path(source)
    path = demo_weights_path()
    if not path.is_file():
        raise WeightsError(f"this installation has no demo weights ({path} is missing): pass a checkpoint path")
    return path


#: The first bytes of a ``torch.save`` file (a zip archive); older checkpoints are bare pickles.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = 0x80
#: How ``weights_only=True`` names a class or function it refused to unpickle.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _read_checkpoint(path: Path) -> object:
    """What ``torch.load`` reads from ``path`` with ``weights_only=True``.

    Raises:
        WeightsError: naming why the file cannot be read, in this project's words (torch's own
            message would suggest ``weights_only=False``, which runs the file's code).
    """
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if not head:
        raise WeightsError(f"{path} is not a PyTorch checkpoint: the file is empty")
    try:
        with warnings.catch_warnings():
            # torch's remarks on the pickle protocol concern how the file was written, not the user.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a file that is not a checkpoint
        raise WeightsError(_unreadable_reason(path, head, error)) from None


def _unreadable_reason(path: Path, head: bytes, error: Exception) -> str:
    refused = _REFUSED_GLOBAL.search(str(error))
    if refused is not None:
        return (
            f"{path} holds Python objects besides tensors ({refused.group(1)}), and checkpoints are read "
            "without running code: save the model's state_dict() with torch.save and pass that file"
        )
    if head == _ZIP_MAGIC:
        return f"{path} is not a readable PyTorch checkpoint: its archive is damaged or cut short; save or download it again"
    if head[0] == _PICKLE_PROTOCOL:
        return (
            f"{path} is not a PyTorch checkpoint: it is a Python pickle that torch.save did not write; "
            "save the model's state_dict() with torch.save and pass that file"
        )
    return f"{path} is not a PyTorch checkpoint (the file torch.save writes, usually .pth or .pt)"


def extract_state_dict(checkpoint: object, origin: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint, with any ``module.`` prefix removed.

    Args:
        checkpoint: what ``torch.load`` returned.
        origin: how to name the checkpoint in error messages.

    Raises:
        WeightsError: it holds no mapping of parameter names to tensors.
    """
    if isinstance(checkpoint, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise WeightsError(f"{origin} holds no SwiftNet weights: it holds {_described(checkpoint)}, not a state dict")
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in checkpoint.items()):
        raise WeightsError(
            f"{origin} holds no SwiftNet weights: it maps names to other things than tensors, not a state dict"
        )
    if all(key.startswith(_PREFIX) for key in checkpoint):
        return {key[len(_PREFIX) :]: value for key, value in checkpoint.items()}
    return dict(checkpoint)


def _described(value: object) -> str:
    if isinstance(value, Mapping):
        return "an empty mapping" if not value else f"a mapping of {', '.join(map(repr, list(value)[:3]))}"
    return f"a {type(value).__name__}"


def recommended_internal_size(checkpoint: object) -> int:
    """The shorter side a loaded checkpoint's weights segment best at: its recorded
    ``swiftcuda.internal_size``, else :data:`PAPER_INTERNAL_SIZE`."""
    metadata = checkpoint.get(_METADATA_KEY) if isinstance(checkpoint, Mapping) else None
    size = metadata.get("internal_size") if isinstance(metadata, Mapping) else None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    return PAPER_INTERNAL_SIZE


def with_internal_size(state_dict: Mapping[str, Tensor], internal_size: int) -> dict[str, object]:
    """A checkpoint holding ``state_dict`` and the internal size it is recommended at (for ``torch.save``)."""
    return {"state_dict": dict(state_dict), _METADATA_KEY: {"internal_size": int(internal_size)}}


def read_checkpoint_info(source: str | os.PathLike) -> tuple[dict[str, Tensor], int]:
    """The state dict of a checkpoint file and its recommended internal size.

    Raises:
        WeightsError: the file is missing, not a checkpoint, or holds no state dict.
    """
    path = resolve_weights(source)
    checkpoint = _read_checkpoint(path)
    return extract_state_dict(checkpoint, origin=str(path)), recommended_internal_size(checkpoint)


def read_state_dict(source: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict of a checkpoint file (official or swiftcuda), without a ``module.`` prefix.

    Raises:
        WeightsError: the file is missing, not a checkpoint, or holds no state dict.
    """
    path = Path(source)
    return extract_state_dict(_read_checkpoint(path), origin=str(path))


def detect_variant(state_dict: Mapping[str, Tensor]) -> str | None:
    """ "r18" or "r50" judging by layer3's channel count, or None when the checkpoint does not say."""
    probe = state_dict.get(_VARIANT_PROBE)
    if probe is None or probe.dim() != 4:
        return None
    for name, config in CONFIGS.items():
        if probe.shape[1] == config.r4_channels:
            return name
    return None


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def check_state_dict(model: SwiftNet, state_dict: Mapping[str, Tensor], origin: str = "checkpoint") -> None:
    """Raise a :class:`WeightsError` naming what differs between ``state_dict`` and ``model``."""
    variant = model.config.variant
    found = detect_variant(state_dict)
    if found is not None and found != variant:
        raise WeightsError(
            f"{origin} is a SwiftNet-{found.upper()} checkpoint (layer3 has {CONFIGS[found].r4_channels} "
            f"channels) but variant={variant!r} was asked: pass variant={found!r}",
            cli_message=f"{origin} is a SwiftNet-{found.upper()} checkpoint but --variant {variant} was given: "
            f"pass --variant {found}",
        )
    expected = model.state_dict()
    if not any(k in expected for k in state_dict):
        raise WeightsError(
            f"{origin} holds no SwiftNet weights: none of its {len(state_dict)} tensors "
            f"({_listed(list(state_dict))}) is a SwiftNet parameter"
        )
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shape {_listed(wrong_shape)}")
    if problems:
        raise WeightsError(f"{origin} does not fit SwiftNet-{variant.upper()}: " + "; ".join(problems))


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that can run here.

    Raises:
        InputError: the device is unknown, or CUDA was asked for on a machine without a GPU.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(
            f"unknown device {device!r}: pass device='cpu' or device='cuda'",
            cli_message=f"unknown device {device!r}: use --device cpu or --device cuda",
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device={str(device)!r} was asked but no CUDA GPU is available here: pass device='cpu'",
            cli_message=f"--device {device} was asked but no CUDA GPU is available here: use --device cpu",
        )
    if device.type not in ("cpu", "cuda"):
        raise InputError(
            f"device {device.type!r} is not supported: pass device='cpu' or device='cuda'",
            cli_message=f"device {device.type!r} is not supported: use --device cpu or --device cuda",
        )
    return device


def load_model(
    source: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = "auto",
    variant: str = "r18",
) -> SwiftNet:
    """Build SwiftNet and load a checkpoint into it strictly.

    Args:
        source: path of a checkpoint (official or this project's), or "demo" for the weights
            shipped with the package (trained on synthetic videos only).
        device: where the model runs.
        dtype: parameter dtype (float32, float16 or bfloat16), a precision name ("fp32", "fp16",
            "bf16"), or "auto" for what ``device`` runs fastest (:mod:`swiftcuda.precision`:
            float16 on a GPU, bfloat16 on a CPU with native bfloat16, float32 elsewhere).
        variant: "r18" (the official release) or "r50".

    Returns:
        The model in eval mode on ``device`` in ``dtype``, its ``recommended_internal_size`` set
        from the checkpoint (:func:`recommended_internal_size`).

    Raises:
        WeightsError: the file is missing, not a checkpoint, or does not match the variant.
    """
    device = resolve_device(device)
    dtype = resolve_precision(dtype, device)
    path = resolve_weights(source)
    state_dict, internal_size = read_checkpoint_info(path)
    model = SwiftNet(variant)
    check_state_dict(model, state_dict, origin=str(path))
    model.load_state_dict(state_dict, strict=True)
    model.recommended_internal_size = internal_size
    logger.info("loaded SwiftNet-%s weights from %s (%s on %s)", variant.upper(), path, dtype, device)
    return model.eval().to(device=device, dtype=dtype)
