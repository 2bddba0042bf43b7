"""torchvision ResNets as feature-map backbones (classifier and global pooling removed)."""
from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from rcdml.models.registry import register_backbone


# torchvision's module names, in the order of the trunk's (numbered) Sequential children.
TORCHVISION_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _trunk(net: tvm.ResNet) -> nn.Module:
    return nn.Sequential(*(getattr(net, name) for name in TORCHVISION_NAMES))


@register_backbone("resnet18", channels=512)
def resnet18(imagenet: bool) -> nn.Module:
    return _trunk(tvm.resnet18(weights=tvm.ResNet18_Weights.IMAGENET1K_V1 if imagenet else None))


@register_backbone("resnet50", channels=2048)
def resnet50(imagenet: bool) -> nn.Module:
    return _trunk(tvm.resnet50(weights=tvm.ResNet50_Weights.IMAGENET1K_V1 if imagenet else None))


@register_backbone("resnet101", channels=2048)
def resnet101(imagenet: bool) -> nn.Module:
    return _trunk(tvm.resnet101(weights=tvm.ResNet101_Weights.IMAGENET1K_V1 if imagenet else None))
