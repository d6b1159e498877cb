"""The export cache of ``swiftcuda segment --runtime onnx``: each model is exported once.

An export depends on the weights, the variant, the precision and the exporting software, not on
the video (frame size, object count and capacity are dynamic in the graphs), so the cache folder is
named by a hash of those. It lives under ``$XDG_CACHE_HOME/swiftcuda/onnx`` (``~/.cache`` without
it), beside the convolution tuning cache. Exports are written all or nothing
(:func:`swiftcuda.io.output.staged_directory`), so a folder that exists is complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from swiftcuda._version import __version__
from swiftcuda.errors import InputError
from swiftcuda.model import SwiftNet
from swiftcuda.onnx.export import FORMAT_VERSION, export_onnx, read_sidecar

logger = logging.getLogger(__name__)

#: The traced example's frame size for cached exports (the graphs take any multiple of 16).
EXAMPLE_SIZE = (96, 128)


def cache_root() -> Path:
    """The folder that holds cached exports."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "swiftcuda" / "onnx"


def model_fingerprint(model: SwiftNet) -> str:
    """A hash of the model's parameters and buffers (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_folder(model: SwiftNet, precision: str) -> Path:
    """Where the export of ``model`` in ``precision`` is cached."""
    import onnx

    key = hashlib.sha256(
        f"{model_fingerprint(model)} {precision} swiftcuda {__version__} format {FORMAT_VERSION} "
        f"torch {torch.__version__} onnx {onnx.__version__}".encode()
    ).hexdigest()[:20]
    return cache_root() / f"{model.config.variant}-{precision}-{key}"


def cached_export(model: SwiftNet, precision: str = "fp32", notify: Callable[[str], None] = logger.info) -> Path:
    """The export folder of ``model`` in ``precision``, exporting it on first use.

    Args:
        model: the SwiftNet to export (left unchanged).
        precision: "fp32" or "fp16".
        notify: called with one line when an export starts (it takes a while).

    Returns:
        The folder, ready for :class:`~swiftcuda.onnx.OnnxSegmenter`.
    """
    folder = cache_folder(model, precision)
    try:
        read_sidecar(folder)
        return folder
    except InputError:
        pass  # not cached yet, or an unusable leftover: export (again)
    notify(f"exporting the model to ONNX once, into {folder} (later runs reuse it)")
    try:
        export_onnx(model, folder, size=EXAMPLE_SIZE, precision=precision, overwrite=True, weights="cached")
    except OSError as error:
        # Another process may have moved its export into place first; use it if it is complete.
        try:
            read_sidecar(folder)
        except InputError:
            raise InputError(
                f"cannot write the ONNX export cache {folder} ({error}): point XDG_CACHE_HOME at a writable folder"
            ) from None
    return folder
