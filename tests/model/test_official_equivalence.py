"""The engine against an independent restatement of the official SwiftNet code (same weights).

Component tests compare intermediate tensors, where a wrong connection shows at full strength;
the video test compares every frame's probabilities and the long-term memory after every step,
which pins down the official schedule, the concatenation order and the pixel selection.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swiftcuda import Segmenter
from swiftcuda.bench import official
from tests.models import random_swiftnet
from tests.videos import make_video

RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def model():
    return random_swiftnet(seed=7)


def _frame(generator, height=64, width=96):
    return torch.rand(1, 3, height, width, generator=generator)


@torch.no_grad()
def test_query_encoder_matches(model):
    frame = _frame(torch.Generator().manual_seed(1))
    query = model.encode_query(frame)
    expected = official.encoder(model.state_dict(), frame)
    for mine, theirs in zip(query.features, expected):
        torch.testing.assert_close(mine, theirs, rtol=RTOL, atol=ATOL)
    sd = model.state_dict()
    torch.testing.assert_close(
        query.key, F.conv2d(expected[0], sd["KV_Q_r4.Key.weight"], sd["KV_Q_r4.Key.bias"], padding=1)
    )


@torch.no_grad()
def test_memory_encoder_matches(model):
    generator = torch.Generator().manual_seed(2)
    frame = _frame(generator)
    features = model.encode_query(frame).features
    probs = torch.rand(3, 64, 96, generator=generator)
    keys, values = model.encode_memory(features, probs, backend="reference")
    sd = model.state_dict()
    others = torch.stack([probs.sum(0) - probs[o] for o in range(3)]).clamp(0, 1)
    fused = official.lae(sd, *official.encoder(sd, frame), probs, others)
    expected_keys = F.conv2d(fused, sd["KV_M_r4.Key.weight"], sd["KV_M_r4.Key.bias"], padding=1).flatten(2)
    expected_values = F.conv2d(fused, sd["KV_M_r4.Value.weight"], sd["KV_M_r4.Value.bias"], padding=1).flatten(2)
    torch.testing.assert_close(keys, expected_keys, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(values, expected_values, rtol=RTOL, atol=ATOL)


@torch.no_grad()
def test_read_and_decoder_match(model):
    generator = torch.Generator().manual_seed(3)
    query = model.encode_query(_frame(generator))
    mem_key = torch.randn(2, 32, 50, generator=generator)
    mem_val = torch.randn(2, 128, 50, generator=generator)
    probs = model.segment_objects(query, mem_key, mem_val, backend="reference")
    sd = model.state_dict()
    readout = official.read(mem_key, mem_val, query.key.expand(2, -1, -1, -1), query.value.expand(2, -1, -1, -1))
    logits = official.decode(sd, readout, query.features.r3, query.features.r2)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1)[:, 1], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mem_every", [2, 5])
def test_video_matches_official_loop(model, mem_every):
    video = make_video(num_frames=13, height=83, width=117, object_ids=(1, 2, 3), seed=4)
    frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected, memories = official.run_video(
            model.state_dict(), frames, torch.from_numpy(video.labels[0]), mem_every
        )
    segmenter = Segmenter(model, memory="official", mem_every=mem_every, backend="reference")
    segmenter.step(video.frames[0], mask=video.labels[0])
    pixels = 6 * 8  # 83x117 pads to 96x128: a 6x8 grid at 1/16
    for t in range(1, len(frames)):
        probs = segmenter.step(video.frames[t])
        torch.testing.assert_close(probs, expected[t - 1], rtol=RTOL, atol=ATOL, msg=f"frame {t}")
        memory = memories[t - 1]
        if memory is None:
            assert segmenter.long_term_lengths == [0, 0, 0]
            continue
        assert segmenter.long_term_lengths == [memory.shape[2]] * 3, f"frame {t}"
        stored = segmenter.memory.keys[:, :, pixels : pixels + memory.shape[2]]
        torch.testing.assert_close(stored, memory, rtol=RTOL, atol=ATOL, msg=f"memory after frame {t}")
