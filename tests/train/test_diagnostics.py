"""The self-read attention check tells a matching memory read from one collapsed onto the object."""

from __future__ import annotations

import math

import pytest
import torch

from swiftcuda.errors import InputError
from swiftcuda.train.diagnostics import self_read_attention
from swiftcuda.train.forward import ClipPrediction, attention_on_object, matching_loss
from tests.models import random_swiftnet


def test_attention_on_object_is_the_memory_reads_softmax_weighted_by_object_fraction():
    gen = torch.Generator().manual_seed(5)
    key_dim, entries, pixels = 11, 37, 23
    mem_key, q_key = torch.randn(key_dim, entries, generator=gen), torch.randn(key_dim, pixels, generator=gen)
    weight = torch.rand(entries, generator=gen)
    expected = []
    for p in range(pixels):
        exps = [math.exp(float(mem_key[:, j] @ q_key[:, p]) / math.sqrt(key_dim)) for j in range(entries)]
        expected.append(sum(e * float(w) for e, w in zip(exps, weight)) / sum(exps))
    torch.testing.assert_close(
        attention_on_object(mem_key, q_key, weight), torch.tensor(expected), rtol=1e-5, atol=1e-6
    )


def test_a_matching_read_and_a_collapsed_read_score_apart():
    is_object = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    # Matching: each pixel's key is its own direction; it reads itself.
    keys = 20.0 * torch.eye(6)
    matched = attention_on_object(keys, keys, is_object)
    torch.testing.assert_close(matched, is_object, atol=1e-6, rtol=0)
    # Collapsed: the object's memory keys share a direction every query leans towards.
    mem_key = keys.clone()
    mem_key[:, :2] += 30.0
    queries = keys + 5.0
    collapsed = attention_on_object(mem_key, queries, is_object)
    assert float(collapsed[2:].min()) > 0.99


def test_matching_loss_is_low_for_a_matching_read_and_high_for_a_collapsed_one():
    # A 1x2-cell clip of two frames: the object is the left cell in both.
    labels = torch.zeros(2, 16, 32, dtype=torch.int64)
    labels[:, :, :16] = 1
    keys = 20.0 * torch.eye(2)
    matching = ClipPrediction([], first_keys=keys[None], query_keys=torch.stack([keys, keys]))
    collapsed_keys = keys.clone()
    collapsed_keys[:, 0] += 30.0
    collapsed = ClipPrediction([], first_keys=collapsed_keys[None], query_keys=torch.stack([keys, keys + 5.0]))
    assert float(matching_loss(matching, labels)) < 1e-3
    assert float(matching_loss(collapsed, labels)) > 3.0
    # Under bfloat16 autocast (as training on the CPU runs) it stays finite and in float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for prediction in (matching, collapsed):
            loss = matching_loss(prediction, labels)
            assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_self_read_attention_of_a_model_is_a_pair_of_fractions():
    gen = torch.Generator().manual_seed(2)
    frame = torch.rand(3, 64, 96, generator=gen)
    mask = torch.zeros(64, 96, dtype=torch.bool)
    mask[8:40, 16:56] = True
    result = self_read_attention(random_swiftnet(seed=4), frame, mask)
    # Recorded in float32; the tolerance absorbs other CPUs' rounding (AVX2 / AVX-512 kernels). The
    # object covers 6 of the 24 cells: a read that ignored the keys would put 0.25 everywhere.
    assert result.background_queries == pytest.approx(0.208079, abs=2e-5)
    assert result.object_queries == pytest.approx(0.208661, abs=2e-5)


@pytest.mark.parametrize(
    "frame_shape, mask_fill",
    [((3, 64, 96), "empty"), ((3, 64, 96), "full"), ((3, 60, 96), "box"), ((1, 64, 96), "box")],
)
def test_self_read_attention_rejects_what_it_cannot_measure(frame_shape, mask_fill):
    height, width = frame_shape[1:]
    mask = torch.zeros(height, width, dtype=torch.bool)
    if mask_fill == "full":
        mask[:] = True
    elif mask_fill == "box":
        mask[:32, :32] = True
    with pytest.raises(InputError):
        self_read_attention(random_swiftnet(), torch.rand(*frame_shape), mask)
