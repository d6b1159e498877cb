"""Random initialisations for untrained models (tests and benchmarks without weights)."""

from __future__ import annotations

import torch
from torch import nn

from swiftcuda.model.swiftnet import SwiftNet


def lively_random_init(model: SwiftNet, seed: int = 0) -> SwiftNet:
    """Re-initialise ``model`` in place so that an untrained network's outputs depend on its inputs.

    PyTorch's default initialisation leaves an untrained SwiftNet's output nearly constant; here
    convolutions get variance-preserving normal weights and small random biases, and batch norms
    random statistics, so that differences between code paths show in the outputs.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (0.5 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model
