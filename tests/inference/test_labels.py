"""The fused CPU labels kernel against its spec, ids[probs.max(dim=0).indices]."""

from __future__ import annotations

import pytest
import torch

from swiftcuda.inference.labels import labels_method, reference_labels, to_labels
from swiftcuda.ops import extension

needs_extension = pytest.mark.skipif(not extension.status().loaded, reason="the compiled extension is not loaded")


def _probs(classes, height, width, dtype, generator, ties=False):
    probs = torch.rand(classes, height, width, generator=generator)
    if ties:  # few distinct values: many exact ties, where the first maximum must win
        probs = (probs * 4).floor() / 4
    return probs.to(dtype)


@needs_extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("classes, height, width", [(1, 5, 7), (2, 37, 229), (3, 61, 301), (6, 3, 4099)])
@pytest.mark.parametrize("ties", [False, True])
def test_fused_labels_match_the_reference(dtype, classes, height, width, ties):
    generator = torch.Generator().manual_seed(classes * 1000 + height)
    probs = _probs(classes, height, width, dtype, generator, ties)
    ids = torch.randperm(200, generator=generator)[:classes] + 1  # not 0..C-1: the table is really read
    for id_dtype in (torch.int64, torch.uint8, torch.int32):
        table = ids.to(id_dtype)
        got = torch.ops.swiftcuda.labels(probs, table)
        assert got.dtype == id_dtype and got.shape == (height, width)
        assert torch.equal(got, reference_labels(probs, table))


@needs_extension
def test_nan_counts_as_the_maximum_and_the_first_nan_wins():
    probs = torch.tensor(
        [
            [[0.1, float("nan"), 0.9, float("nan")]],
            [[float("nan"), 0.8, 0.2, float("nan")]],
            [[0.5, 0.9, float("nan"), 0.1]],
        ]
    )
    ids = torch.tensor([7, 8, 9])
    assert torch.equal(torch.ops.swiftcuda.labels(probs, ids), reference_labels(probs, ids))
    assert torch.ops.swiftcuda.labels(probs, ids).tolist() == [[8, 7, 9, 7]]


@needs_extension
def test_any_layout():
    generator = torch.Generator().manual_seed(5)
    base = torch.rand(41, 53, 3, generator=generator)  # (H, W, C) in memory: a channels-last view
    probs = base.permute(2, 0, 1)
    ids = torch.tensor([0, 4, 2])
    assert torch.equal(torch.ops.swiftcuda.labels(probs, ids), reference_labels(probs, ids))


@needs_extension
@pytest.mark.parametrize(
    "probs, ids, message",
    [
        (torch.rand(2, 3), torch.tensor([0, 1]), "probs must be a floating"),
        (torch.randint(0, 3, (2, 3, 4)), torch.tensor([0, 1]), "probs must be a floating"),
        (torch.rand(2, 3, 4), torch.tensor([0, 1, 2]), r"ids must be an integer \(2,\)"),
        (torch.rand(2, 3, 4), torch.tensor([0.0, 1.0]), "ids must be an integer"),
    ],
)
def test_bad_arguments_are_named(probs, ids, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.swiftcuda.labels(probs, ids)


def test_to_labels_uses_the_fused_kernel_where_it_can():
    probs = torch.rand(3, 9, 11)
    ids = torch.tensor([0, 3, 5])
    assert torch.equal(to_labels(probs, ids), reference_labels(probs, ids))
    assert ("fused" in labels_method(probs)) == extension.status().loaded
