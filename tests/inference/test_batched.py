"""Several videos at once give what each gives alone."""

from __future__ import annotations

import pytest
import torch

from swiftcuda import BatchedSegmenter, Segmenter
from tests.models import random_swiftnet
from tests.videos import make_video


def test_batched_streams_match_single_streams():
    model = random_swiftnet(seed=2)
    videos = [
        make_video(num_frames=6, height=48, width=64, object_ids=(1, 2), seed=1),
        make_video(num_frames=6, height=48, width=64, object_ids=(5,), seed=2),
        make_video(num_frames=6, height=40, width=72, object_ids=(3, 4, 6), seed=3),
    ]
    starts = [0, 0, 2]  # the third video starts two steps later
    batch = BatchedSegmenter(model, num_videos=3)
    batched: list[list[torch.Tensor]] = [[], [], []]
    for step in range(6):
        images, masks = [], []
        for video, start in zip(videos, starts):
            t = step - start
            images.append(video.frames[t] if t >= 0 else None)
            masks.append(video.labels[t] if t == 0 else None)
        for index, probs in enumerate(batch.step(images, masks)):
            if probs is not None:
                batched[index].append(probs)
    for index, (video, start) in enumerate(zip(videos, starts)):
        alone = Segmenter(model)
        expected = [alone.step(video.frames[0], mask=video.labels[0])]
        expected += [alone.step(video.frames[t]) for t in range(1, 6 - start)]
        assert len(batched[index]) == len(expected)
        for got, want in zip(batched[index], expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert batch.streams[index].object_ids == alone.object_ids


def test_batched_session_checks_its_arguments():
    model = random_swiftnet(seed=2)
    with pytest.raises(ValueError, match="one image"):
        BatchedSegmenter(model, num_videos=2).step([None])
    with pytest.raises(ValueError, match="CUDA graphs"):
        BatchedSegmenter(model, num_videos=2, cuda_graphs=True)
