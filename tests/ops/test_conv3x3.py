"""The CPU Winograd 3x3 convolution (``swiftcuda::conv3x3``) and the module that uses it.

Every way the op splits work is reached: whole images per thread, images split by rows (large
maps, few channels) and by output channels (small maps, many channels), with 1 to 3 threads.
Winograd F(6x6, 3x3) in float32 rounds more than a direct convolution (its transforms scale
values by up to ~10), so it is checked against float64 with its own bound, 5e-5 of the output's
largest magnitude, measured at 0.7e-5 to 1.5e-5 on SwiftNet's shapes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from swiftcuda.ops import extension
from swiftcuda.optimize.winograd import MIN_CHANNELS, WinogradConv2d, resolve_winograd, use_winograd_convolutions

pytestmark = pytest.mark.skipif(
    not extension.status().winograd, reason="extension or NNPACK unavailable: conv3x3 cannot run here"
)

#: Winograd's float32 error bound, relative to the largest output magnitude (see the docstring).
WINOGRAD_ATOL = 5e-5

# (batch, in channels, out channels, height, width): none a multiple of NNPACK's 6x6 output tiles.
SHAPES = {
    "rows": (1, 8, 12, 37, 53),  # map large next to the weights: split by rows
    "channels": (1, 40, 36, 13, 17),  # small map, many channels: split by output channels
    "batch-odd": (3, 8, 16, 20, 31),  # more images than threads, not a multiple of them
    "batch-even": (4, 16, 8, 9, 11),
    "tiny": (1, 3, 8, 1, 2),
    "one-row": (2, 5, 9, 1, 29),
}


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}threads")
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def truth(x, weight, bias, relu=False):
    out = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    return out.relu() if relu else out


def assert_winograd_close(result, expected):
    assert result.dtype == torch.float32 and result.shape == expected.shape
    assert torch.isfinite(result).all()
    scale = expected.abs().max().item()
    torch.testing.assert_close(result.double(), expected, rtol=0, atol=WINOGRAD_ATOL * max(scale, 1e-3))


def random_inputs(shape, generator, bias=True):
    batch, cin, cout, height, width = shape
    x = torch.randn(batch, cin, height, width, generator=generator)
    weight = torch.randn(cout, cin, 3, 3, generator=generator) / (3 * cin**0.5)
    b = torch.randn(cout, generator=generator) if bias else None
    return x, weight, b


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_matches_direct_convolution(shape, threads, generator):
    x, weight, bias = random_inputs(shape, generator)
    # relu=False: no output is exactly zero, so an element left unwritten cannot pass by luck.
    assert_winograd_close(torch.ops.swiftcuda.conv3x3(x, weight, bias, False), truth(x, weight, bias))


@pytest.mark.parametrize("shape", [SHAPES["rows"], SHAPES["channels"]], ids=["rows", "channels"])
def test_fused_relu_and_missing_bias(shape, generator):
    x, weight, _ = random_inputs(shape, generator, bias=False)
    out = torch.ops.swiftcuda.conv3x3(x, weight, None, True)
    assert (out >= 0).all()
    assert_winograd_close(out, truth(x, weight, None, relu=True))


def test_channels_last_and_strided_inputs(generator):
    x, weight, bias = random_inputs(SHAPES["rows"], generator)
    expected = truth(x, weight, bias)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert_winograd_close(torch.ops.swiftcuda.conv3x3(channels_last, weight, bias, False), expected)
    wide = torch.randn(1, 8, 37, 60, generator=generator)
    wide[..., :53] = x
    out = torch.ops.swiftcuda.conv3x3(wide[..., :53], weight, bias, False)  # a non-contiguous view
    assert_winograd_close(out, expected)
    assert out.is_contiguous()


def test_rejects_wrong_inputs():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.swiftcuda.conv3x3(x.double(), torch.randn(2, 4, 3, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="weight must be"):
        torch.ops.swiftcuda.conv3x3(x, torch.randn(2, 4, 5, 5))
    with pytest.raises(RuntimeError, match="bias must be"):
        torch.ops.swiftcuda.conv3x3(x, torch.randn(2, 4, 3, 3), torch.randn(3))


def test_module_replaces_eligible_convolutions_only(generator):
    wide = MIN_CHANNELS
    model = nn.Sequential(
        nn.Conv2d(6, wide, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(wide, wide, 3, padding=2, dilation=2),  # dilated: kept
        nn.Conv2d(wide, wide, 3, stride=2, padding=1),  # strided: kept
        nn.Sequential(nn.Conv2d(wide, wide + 1, 3, padding=1, bias=False)),
        nn.Conv2d(wide + 1, wide - 1, 3, padding=1),  # few outputs from a wide input: kept
        nn.Conv2d(wide - 1, 2, 3, padding=1),  # few outputs from a narrow input: replaced
    ).eval()
    x = torch.randn(2, 6, 19, 23, generator=generator)
    with torch.no_grad():
        expected = model.double()(x.double())
        model.float()
        assert use_winograd_convolutions(model) == 3
        assert all(isinstance(m, WinogradConv2d) for m in (model[0], model[4][0], model[6]))
        assert type(model[2]) is nn.Conv2d and type(model[3]) is nn.Conv2d and type(model[5]) is nn.Conv2d
        assert_winograd_close(model(x), expected)


def test_module_falls_back_off_float32(generator):
    conv = nn.Conv2d(4, 8, 3, padding=1)
    module = WinogradConv2d(conv)
    x = torch.randn(1, 4, 10, 12, generator=generator)
    with torch.no_grad():
        expected = conv(x)
        out = module.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match="not a 3x3"):
        WinogradConv2d(nn.Conv2d(4, 8, 3, padding=0))


def test_default_is_float32_on_the_cpu_and_not_when_compiling():
    cpu = torch.device("cpu")
    assert resolve_winograd(None, cpu, torch.float32) is True
    assert resolve_winograd(None, cpu, torch.bfloat16) is False
    assert resolve_winograd(None, cpu, torch.float32, compile=True) is False
    assert resolve_winograd(None, torch.device("cuda"), torch.float32) is False
    assert resolve_winograd(False, cpu, torch.float32) is False
    with pytest.raises(ValueError, match="float32"):
        resolve_winograd(True, cpu, torch.bfloat16)
