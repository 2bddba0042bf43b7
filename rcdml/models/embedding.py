"""Backbone + global pooling + linear embedding head: the network every recipe trains."""
from __future__ import annotations

import os

import torch
from torch import nn

from rcdml.config import ModelConfig
from rcdml.functional import l2_normalize
from rcdml.log import get_logger
from rcdml.models.registry import backbone_spec
from rcdml.models.weights import load_pretrained

log = get_logger(__name__)


class EmbeddingNet(nn.Module):
    """``backbone`` feature map -> avg/max/avg+max pooling -> linear head -> optional l2 norm.

    With ``freeze_bn`` the backbone's BatchNorm layers keep their running statistics and affine
    parameters (eval mode, no gradient) even in ``train()``: with the small per-class batches of
    metric learning, batch statistics are too noisy to update pretrained ones.
    """

    def __init__(self, backbone: nn.Module, channels: int, embedding_size: int,
                 pooling: str = "avg+max", normalize: bool = True, freeze_bn: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(channels, embedding_size)
        nn.init.kaiming_normal_(self.head.weight, mode="fan_out")
        nn.init.zeros_(self.head.bias)
        self.pooling = pooling
        self.normalize = normalize
        self.freeze_bn = freeze_bn
        if freeze_bn:
            for bn in self._batchnorms():
                for p in bn.parameters():
                    p.requires_grad_(False)

    def _batchnorms(self):
        return (m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))

    def train(self, mode: bool = True) -> "EmbeddingNet":
        super().train(mode)
        if self.freeze_bn:
            for bn in self._batchnorms():
                bn.eval()
        return self

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone parameters that train (all but frozen BatchNorm's)."""
        frozen = {id(p) for bn in self._batchnorms() for p in bn.parameters()} if self.freeze_bn else set()
        return [p for p in self.backbone.parameters() if id(p) not in frozen]

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Warm-up freezes the backbone; frozen BatchNorm parameters stay frozen either way."""
        for p in self.backbone_parameters():
            p.requires_grad_(trainable)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone(images)
        if self.pooling == "avg":
            pooled = fmap.mean(dim=(2, 3))
        elif self.pooling == "max":
            pooled = fmap.amax(dim=(2, 3))
        else:
            pooled = fmap.mean(dim=(2, 3)) + fmap.amax(dim=(2, 3))
        out = self.head(pooled)
        if self.normalize:
            out = l2_normalize(out)
        return out


def build_model(cfg: ModelConfig) -> EmbeddingNet:
    """The embedding network of ``cfg``; ``pretrained`` is none, imagenet or a path."""
    spec = backbone_spec(cfg.backbone)
    backbone = spec.build(cfg.pretrained == "imagenet")
    model = EmbeddingNet(backbone, spec.channels, cfg.embedding_size, pooling=cfg.pooling,
                         normalize=cfg.normalize, freeze_bn=cfg.freeze_bn)
    if cfg.pretrained not in ("none", "imagenet"):
        message = load_pretrained(model, os.path.expanduser(cfg.pretrained))
        log.info(message)
    return model
