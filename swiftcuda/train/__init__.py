"""Training and fine-tuning SwiftNet on DAVIS-layout data, the way STM-family models are trained."""

from swiftcuda.train.clips import ClipOptions, ClipSampler, VideoSequence, load_davis_sequences
from swiftcuda.train.diagnostics import SelfReadAttention, self_read_attention
from swiftcuda.train.trainer import TrainOptions, export_weights, train

__all__ = [
    "ClipOptions",
    "ClipSampler",
    "SelfReadAttention",
    "TrainOptions",
    "VideoSequence",
    "export_weights",
    "load_davis_sequences",
    "self_read_attention",
    "train",
]
