"""The ResNet trunk: no torchvision needed, and torchvision's names and arithmetic exactly."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from swiftcuda.model.backbone import BasicBlock, Bottleneck, Encoder
from swiftcuda.model.config import get_config


def test_swiftcuda_imports_and_builds_a_model_without_torchvision():
    script = textwrap.dedent(
        """
        import importlib.abc, sys
        class NoTorchvision(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torchvision" or name.startswith("torchvision."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoTorchvision())
        import torch, swiftcuda
        from swiftcuda.model.swiftnet import SwiftNet
        model = swiftcuda.load_model("demo")
        assert "torchvision" not in sys.modules
        print("ok", sum(p.numel() for p in model.parameters()))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok ")


@pytest.mark.parametrize("variant, block, depths", [("r18", BasicBlock, (2, 2, 2)), ("r50", Bottleneck, (3, 4, 6))])
def test_trunk_layout(variant, block, depths):
    encoder = Encoder(get_config(variant))
    for layer, depth in zip((encoder.res2, encoder.res3, encoder.res4), depths):
        assert len(layer) == depth and all(type(b) is block for b in layer)
    assert encoder.res2[0].downsample is None if variant == "r18" else encoder.res2[0].downsample is not None
    assert encoder.res3[0].downsample is not None and encoder.res4[0].downsample is not None


def _randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Random weights and batch-norm statistics, so that every term of the arithmetic shows."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point() or name in ("mean", "std"):
                continue
            values = torch.randn(tensor.shape, generator=generator) * 0.2
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            elif name.endswith(".weight") and tensor.dim() == 1:
                values = values + 1.0
            tensor.copy_(values)


@pytest.mark.parametrize("variant", ["r18", "r50"])
def test_trunk_matches_torchvision_exactly(variant, generator):
    """Same state-dict names and shapes as torchvision's resnet layer1..3, and the same values."""
    models = pytest.importorskip("torchvision.models", reason="torchvision is not installed: pip install torchvision")
    encoder = Encoder(get_config(variant)).eval()
    _randomise(encoder, generator)
    resnet = (models.resnet18 if variant == "r18" else models.resnet50)().eval()
    renamed = {
        key.replace("res2.", "layer1.").replace("res3.", "layer2.").replace("res4.", "layer3."): value
        for key, value in encoder.state_dict().items()
        if key not in ("mean", "std")
    }
    expected = {k for k in resnet.state_dict() if not k.startswith(("layer4.", "fc."))}
    assert set(renamed) == expected
    missing, unexpected = resnet.load_state_dict(renamed, strict=False)
    assert not unexpected and all(k.startswith(("layer4.", "fc.")) for k in missing)

    frame = torch.rand(2, 3, 80, 112, generator=generator)
    with torch.no_grad():
        ours = encoder(frame)
        x = (frame - encoder.mean) / encoder.std
        c1 = resnet.relu(resnet.bn1(resnet.conv1(x)))
        r2 = resnet.layer1(resnet.maxpool(c1))
        r3 = resnet.layer2(r2)
        r4 = resnet.layer3(r3)
    for name, got, want in (("c1", ours.c1, c1), ("r2", ours.r2, r2), ("r3", ours.r3, r3), ("r4", ours.r4, r4)):
        assert torch.equal(got, want), f"{variant} {name} differs by {(got - want).abs().max().item()}"


def test_blocks_compute_the_resnet_formula(generator):
    """Without torchvision: a BasicBlock and a Bottleneck against the formula written out."""
    F = torch.nn.functional
    for block in (BasicBlock, Bottleneck):
        planes, stride = 8, 2
        downsample = torch.nn.Sequential(
            torch.nn.Conv2d(6, planes * block.expansion, 1, stride=stride, bias=False),
            torch.nn.BatchNorm2d(planes * block.expansion),
        )
        module = block(6, planes, stride, downsample).eval()
        _randomise(module, generator)
        x = torch.randn(1, 6, 13, 11, generator=generator)

        def bn(name: str, t: torch.Tensor, module: torch.nn.Module = module) -> torch.Tensor:
            m = module.get_submodule(name)
            return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        with torch.no_grad():
            if block is BasicBlock:
                out = F.relu(bn("bn1", F.conv2d(x, module.conv1.weight, stride=stride, padding=1)))
                out = bn("bn2", F.conv2d(out, module.conv2.weight, padding=1))
            else:
                out = F.relu(bn("bn1", F.conv2d(x, module.conv1.weight)))
                out = F.relu(bn("bn2", F.conv2d(out, module.conv2.weight, stride=stride, padding=1)))
                out = bn("bn3", F.conv2d(out, module.conv3.weight))
            skip = bn("downsample.1", F.conv2d(x, downsample[0].weight, stride=stride))
            want = F.relu(out + skip)
            got = module(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
