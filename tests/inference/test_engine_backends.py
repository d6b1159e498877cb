"""The whole engine with each fused backend against backend="reference" on a generated video.

At a small size, every frame runs RSP, the memory read and the soft aggregation through the
backend's kernels; the official schedule's updates run the in-place memory update with the capacity
reached, so clipping and eviction run too; the PAM mode adds the frame-variation op. Triton runs on
the CPU under the interpreter when there is no GPU; "cuda" runs only on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swiftcuda import Segmenter
from swiftcuda.ops import backends
from tests.models import random_swiftnet
from tests.videos import make_video

# Probabilities: float32 kernels against float32 PyTorch through a deep decoder (seen: 4e-7).
PROB_ATOL = 1e-5
# Labels are compared where the winning class leads the runner-up by at least this much (a random
# model leaves pixels with near-ties between classes, where either label is right).
CLEAR_MARGIN = 1e-3
BACKENDS = {"cpu": "cpu", "triton": "cuda" if torch.cuda.is_available() else "cpu", "cuda": "cuda"}


@pytest.fixture(scope="module")
def model():
    return random_swiftnet(seed=3)


def _run(model, video, backend: str, memory: str) -> tuple[list[torch.Tensor], Segmenter]:
    # 20 memory pixels a frame; beta = 0.5 appends 10 an update; a capacity of two frames is
    # reached after two updates.
    segmenter = Segmenter(model, memory=memory, mem_every=2, beta=0.5, capacity=40, backend=backend)
    outputs = [segmenter.step(video.frames[0], mask=video.labels[0])]
    for frame in video.frames[1:]:
        outputs.append(segmenter.step(frame))
    return outputs, segmenter


def _margin(probs: torch.Tensor) -> torch.Tensor:
    top = probs.topk(2, dim=0).values
    return top[0] - top[1]


@pytest.mark.parametrize("memory", ["official", "pam"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_engine_gives_the_reference_masks(model, backend, memory):
    device = BACKENDS[backend]
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    reason = backends.unavailable_reason(backend, device)
    if reason is not None:
        pytest.skip(f"backend {backend!r} unavailable: {reason}")
    model = model.to(device)
    # 3 objects, 64 x 80 (4 x 5 = 20 memory pixels per frame, a partial tile), 8 frames.
    video = make_video(num_frames=8, height=64, width=80, object_ids=(1, 2, 3), seed=11)
    expected, reference_seg = _run(model, video, "reference", memory)
    got, fused_seg = _run(model, video, backend, memory)
    assert fused_seg.long_term_lengths == reference_seg.long_term_lengths
    if memory == "official":
        assert fused_seg.long_term_lengths == [40, 40, 40], "the updates must have filled the memory"
    for t, (mine, theirs) in enumerate(zip(got, expected)):
        assert mine.shape == theirs.shape and mine.dtype == torch.float32
        torch.testing.assert_close(mine.cpu(), theirs.cpu(), rtol=0, atol=PROB_ATOL, msg=f"frame {t}")
        clear = (_margin(theirs) > CLEAR_MARGIN).cpu()
        labels_mine, labels_theirs = fused_seg.to_labels(mine).cpu(), reference_seg.to_labels(theirs).cpu()
        assert torch.equal(labels_mine[clear], labels_theirs[clear]), f"frame {t}: labels differ"
        assert clear.float().mean() > 0.3, "the comparison must cover a good part of the frame"
    # The segmentation is not trivial: more than one class wins somewhere on the last frame.
    assert len(np.unique(fused_seg.to_labels(got[-1]).cpu().numpy())) > 1
