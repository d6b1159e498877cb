"""swiftcuda: real-time video object segmentation with SwiftNet and fused kernels.

Typical use::

    import torch
    import swiftcuda

    model = swiftcuda.load_model("swiftnet_resnet18_old.pth", device="cuda", dtype=torch.float16)
    seg = swiftcuda.Segmenter(model)
    probs = seg.step(first_frame, mask=first_labels)
    for frame in frames:
        probs = seg.step(frame)
"""

import logging

from swiftcuda import nn, ops
from swiftcuda.errors import InputError, SwiftcudaError, WeightsError
from swiftcuda.inference import BatchedSegmenter, PamOptions, Segmenter
from swiftcuda.model import SwiftNet
from swiftcuda.weights import load_model

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BatchedSegmenter",
    "InputError",
    "PamOptions",
    "Segmenter",
    "SwiftNet",
    "SwiftcudaError",
    "WeightsError",
    "__version__",
    "load_model",
    "nn",
    "ops",
]
