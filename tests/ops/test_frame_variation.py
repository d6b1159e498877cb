"""frame_variation: every backend against a direct count."""

from __future__ import annotations

import pytest
import torch

from swiftcuda import ops

SHAPES = [(1, 1, 1), (2, 31, 47), (4, 64, 97)]


def truth(frame, previous, probs, previous_probs, th_f, th_m):
    image = (frame.double() - previous.double()).abs().mean(0) > th_f
    mask = (probs.double() - previous_probs.double()).abs().amax(0) > th_m
    region = (probs.double().amax(0) > 0.5) | (previous_probs.double().amax(0) > 0.5)
    return [float(((image | mask) & region).sum()), float(region.sum())]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_direct_count(backend_device, shape, dtype, generator):
    backend, device = backend_device
    objects, height, width = shape
    # Values on a coarse grid keep every comparison far from its threshold in any precision.
    grid = lambda *s: (torch.randint(0, 9, s, generator=generator).float() / 8).to(dtype)  # noqa: E731
    frame, previous = grid(3, height, width), grid(3, height, width)
    probs, previous_probs = grid(objects, height, width), grid(objects, height, width)
    th_f, th_m = 0.2 + 1 / 48, 0.3 + 1 / 48
    expected = truth(frame, previous, probs, previous_probs, th_f, th_m)
    result = ops.frame_variation(
        *[t.to(device) for t in (frame, previous, probs, previous_probs)],
        frame_threshold=th_f,
        mask_threshold=th_m,
        backend=backend,
    )
    assert result.device.type == device.type, "the counts stay on the device"
    assert result.cpu().tolist() == expected


def test_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="like the frames"):
        ops.frame_variation(
            torch.rand(3, 8, 8),
            torch.rand(3, 8, 8),
            torch.rand(2, 8, 9),
            torch.rand(2, 8, 9),
            frame_threshold=0.1,
            mask_threshold=0.5,
        )
