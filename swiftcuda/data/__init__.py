"""Data sets: DAVIS and YouTube-VOS layouts, and generated test videos with known masks."""

from swiftcuda.data.davis import DavisDataset, DavisSequence, annotation_folder, read_sequence_list
from swiftcuda.data.testset import (
    Testset,
    bundled_masks_root,
    list_mask_sequences,
    load_mask_sequence,
    make_shapes_testset,
    make_testset,
    render_video,
    sequence_rng,
)
from swiftcuda.data.youtube import YouTubeVideo, YouTubeVOSDataset

__all__ = [
    "DavisDataset",
    "DavisSequence",
    "Testset",
    "YouTubeVOSDataset",
    "YouTubeVideo",
    "annotation_folder",
    "bundled_masks_root",
    "list_mask_sequences",
    "load_mask_sequence",
    "make_shapes_testset",
    "make_testset",
    "read_sequence_list",
    "render_video",
    "sequence_rng",
]
