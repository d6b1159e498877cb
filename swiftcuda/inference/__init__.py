"""The streaming engine: segmenter, memory store, update triggers."""

from swiftcuda.inference.batched import BatchedSegmenter
from swiftcuda.inference.memory import MemoryStore, default_capacity
from swiftcuda.inference.segmenter import Segmenter
from swiftcuda.inference.trigger import EveryNthFrame, PamOptions, VariationAwareTrigger

__all__ = ["BatchedSegmenter", "EveryNthFrame", "MemoryStore", "PamOptions", "Segmenter", "VariationAwareTrigger", "default_capacity"]
