"""The whole engine with backend="cpu" (the C++ OpenMP kernels) against backend="reference".

A generated video at a small size: every frame runs RSP and the memory read through the C++
kernels, the official schedule's updates run the in-place memory update (with the capacity reached,
so clipping and eviction run too), and the PAM mode adds the variation trigger.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swiftcuda import Segmenter
from swiftcuda.ops import backends
from tests.models import random_swiftnet
from tests.videos import make_video

# Probabilities: float32 kernels against float32 PyTorch through a deep decoder.
PROB_ATOL = 1e-5
# Labels are compared where the winning class leads the runner-up by at least this much (a random
# model leaves near-ties where either label is right).
CLEAR_MARGIN = 1e-3


@pytest.fixture(scope="module")
def model():
    reason = backends.unavailable_reason("cpu", "cpu")
    if reason is not None:
        pytest.skip(f"cpu backend unavailable: {reason}")
    return random_swiftnet(seed=3)


def _run(model, video, backend: str, memory: str) -> tuple[list[torch.Tensor], Segmenter]:
    # 20 memory pixels a frame; beta = 0.5 appends 10 per update; the capacity of 40 fills up.
    segmenter = Segmenter(model, memory=memory, mem_every=2, beta=0.5, capacity=40, backend=backend)
    outputs = [segmenter.step(video.frames[0], mask=video.labels[0])]
    for frame in video.frames[1:]:
        outputs.append(segmenter.step(frame))
    return outputs, segmenter


def _margin(probs: torch.Tensor) -> torch.Tensor:
    top = probs.topk(2, dim=0).values
    return top[0] - top[1]


@pytest.mark.parametrize("memory", ["official", "pam"])
def test_cpu_engine_gives_the_reference_masks(model, memory):
    # 3 objects, 64 x 80 (4 x 5 = 20 memory pixels per frame), 8 frames.
    video = make_video(num_frames=8, height=64, width=80, object_ids=(1, 2, 3), seed=11)
    expected, reference_seg = _run(model, video, "reference", memory)
    got, cpu_seg = _run(model, video, "cpu", memory)
    assert cpu_seg.long_term_lengths == reference_seg.long_term_lengths
    if memory == "official":
        assert cpu_seg.long_term_lengths == [40, 40, 40], "the updates must have filled the memory"
    for t, (mine, theirs) in enumerate(zip(got, expected)):
        assert mine.shape == theirs.shape and mine.dtype == torch.float32
        torch.testing.assert_close(mine, theirs, rtol=0, atol=PROB_ATOL, msg=f"frame {t}")
        clear = _margin(theirs) > CLEAR_MARGIN
        assert torch.equal(cpu_seg.to_labels(mine)[clear], reference_seg.to_labels(theirs)[clear]), f"frame {t}"
        assert clear.float().mean() > 0.3, "the comparison must cover a good part of the frame"
    assert len(np.unique(cpu_seg.to_labels(got[-1]).numpy())) > 1, "more than one class wins somewhere"
