"""torchvision GoogLeNet (Inception v1) as a feature-map backbone."""
from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from rcdml.models.registry import register_backbone

_STAGES = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
           "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
           "maxpool4", "inception5a", "inception5b")


class GoogLeNetTrunk(nn.Module):
    """GoogLeNet up to ``inception5b``; keeps torchvision's input re-scaling for ImageNet weights,
    which were ported from a network trained on differently normalised inputs."""

    def __init__(self, net: tvm.GoogLeNet) -> None:
        super().__init__()
        self.transform_input = net.transform_input
        for name in _STAGES:
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            x = torch.cat([x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                           x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                           x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5], dim=1)
        for name in _STAGES:
            x = getattr(self, name)(x)
        return x


@register_backbone("googlenet", channels=1024)
def googlenet(imagenet: bool) -> nn.Module:
    if imagenet:
        return GoogLeNetTrunk(tvm.googlenet(weights=tvm.GoogLeNet_Weights.IMAGENET1K_V1))
    return GoogLeNetTrunk(tvm.googlenet(weights=None, aux_logits=False, init_weights=True))
