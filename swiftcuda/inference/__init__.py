"""The streaming engine: segmenter, memory store, update triggers."""

from swiftcuda.inference.batched import BatchedSegmenter
from swiftcuda.inference.memory import MemorySnapshot, MemoryStore, default_capacity
from swiftcuda.inference.segmenter import Segmenter, SegmenterState
from swiftcuda.inference.trigger import EveryNthFrame, PamOptions, VariationAwareTrigger

__all__ = [
    "BatchedSegmenter",
    "EveryNthFrame",
    "MemorySnapshot",
    "MemoryStore",
    "PamOptions",
    "Segmenter",
    "SegmenterState",
    "VariationAwareTrigger",
    "default_capacity",
]
