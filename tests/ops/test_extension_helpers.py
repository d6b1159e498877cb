"""The arithmetic shared by the CUDA and CPU kernels (kernels/cuda/common.cuh), through test hooks.

The hooks run the very __host__ __device__ functions the GPU runs; here they are checked against
Python's own semantics, so a mistake in them shows up without a GPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from swiftcuda.ops import extension
from swiftcuda.ops.reference import novel_pixel_count

pytestmark = pytest.mark.skipif(
    not extension.status().loaded, reason=f"extension unavailable: {extension.status().error}"
)


def test_ordered_key_sorts_like_torch(generator):
    special = torch.tensor([float("-inf"), -1e30, -1.0, -1e-40, -0.0, 0.0, 1e-40, 1e-30, 1.0, 3e38, float("inf")])
    values = torch.cat(
        [special, torch.randn(2000, generator=generator) * 10, torch.randn(100, generator=generator) * 1e-39]
    )
    keys = torch.ops.swiftcuda._ordered_key(values)
    order = torch.argsort(values, stable=True)
    assert (keys[order][1:] >= keys[order][:-1]).all(), "keys must be monotonic in the value"
    equal_values = values[order][1:] == values[order][:-1]
    assert torch.equal(keys[order][1:] == keys[order][:-1], equal_values), "equal keys exactly for equal values"
    zeros = torch.ops.swiftcuda._ordered_key(torch.tensor([-0.0, 0.0]))
    assert zeros[0] == zeros[1], "-0 and +0 tie, as in torch.sort"
    nans = torch.ops.swiftcuda._ordered_key(torch.tensor([float("nan"), -float("nan"), float("inf")]))
    assert nans[0] == nans[1] == 2**32 - 1 > nans[2], "NaN sorts last, as in torch.sort"


def test_exp2_approx_is_float32_accurate(generator):
    x = torch.cat(
        [torch.linspace(-126, 0, 100001), -torch.rand(10000, generator=generator) * 30, torch.linspace(0, 100, 1001)]
    )
    result = torch.ops.swiftcuda._exp2_approx(x).double()
    truth = torch.exp2(x.double())
    relative = ((result - truth).abs() / truth).max().item()
    assert relative < 3e-7, f"relative error {relative:.3g}"
    tiny = torch.ops.swiftcuda._exp2_approx(torch.tensor([-127.0, -200.0, float("-inf")]))
    assert torch.equal(tiny, torch.zeros(3)), "weights below 2^-126 flush to zero, -inf gives 0"


@pytest.mark.parametrize("beta", [0.1, 0.05, 0.15, 0.3, 0.37, 0.5, 0.9, 1.0, 1e-3])
def test_novel_pixel_count_matches_python(beta):
    for pixels in list(range(0, 300)) + [1620, 2040, 3600, 8160, 12345]:
        assert torch.ops.swiftcuda._novel_pixel_count(pixels, beta) == novel_pixel_count(pixels, beta), (pixels, beta)


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 1000, 16383, 32000])
@pytest.mark.parametrize("splits", [1, 2, 3, 7, 64])
def test_split_ranges_tile_the_memory(length, splits):
    tile = 64
    covered = []
    for split in range(splits):
        begin, end = torch.ops.swiftcuda._split_range(length, split, splits, tile)
        assert 0 <= begin <= end <= length
        assert begin % tile == 0 or begin == length, "splits start on tile boundaries"
        covered.extend(range(begin, end))
    assert covered == list(range(length)), "every entry in exactly one split, in order"


@pytest.mark.parametrize("factor,height,width", [(16, 32, 48), (4, 12, 20), (2, 6, 10), (1, 3, 5)])
def test_unshuffle_source_is_pixel_unshuffle(factor, height, width):
    plane = torch.arange(height * width, dtype=torch.float64).view(1, 1, height, width)
    expected = F.pixel_unshuffle(plane, factor)[0]
    for channel in range(factor * factor):
        for y in range(height // factor):
            for x in range(width // factor):
                source = torch.ops.swiftcuda._unshuffle_source(channel, y, x, factor, width)
                assert source == expected[channel, y, x].item()


def test_softmax_scale_and_eps_constants():
    # The read's logits are scaled by log2(e) / sqrt(Ck) so that weights are exp2(s - max): check the
    # read against torch on logits large enough that a wrong base would show.
    mem_key = torch.randn(1, 16, 50) * 4
    mem_val = torch.randn(1, 8, 50)
    q_key = torch.randn(1, 16, 3) * 4
    q_val = torch.randn(1, 8, 3)
    out = torch.ops.swiftcuda.memory_read(mem_key, mem_val, q_key, q_val, None)
    weights = torch.softmax(mem_key[0].double().T @ q_key[0].double() / math.sqrt(16), dim=0)
    torch.testing.assert_close(out[0, :8].double(), mem_val[0].double() @ weights, rtol=2e-5, atol=2e-6)
