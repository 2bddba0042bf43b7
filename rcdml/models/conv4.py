"""Conv-4: four [3x3 conv, BatchNorm, ReLU, 2x2 max-pool] blocks, the standard backbone of
Omniglot and mini-ImageNet metric and few-shot learning (Vinyals et al., 2016; Snell et al.,
2017). Small inputs (28-84 px) on a CPU budget; the paper recipes use BN-Inception instead."""
from __future__ import annotations

from torch import nn

from rcdml.models.registry import register_backbone

WIDTH = 64


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register_backbone("conv4", channels=WIDTH)
def conv4(imagenet: bool) -> nn.Module:
    if imagenet:
        raise ValueError("model.pretrained: conv4 has no ImageNet weights; use none or a path")
    net = nn.Sequential(_block(3, WIDTH), _block(WIDTH, WIDTH), _block(WIDTH, WIDTH), _block(WIDTH, WIDTH))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net
