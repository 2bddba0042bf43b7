"""Backbone + global pooling + linear embedding head: the network every recipe trains."""
from __future__ import annotations

import os

import torch
from torch import nn

from rcdml.config import ModelConfig
from rcdml.functional import l2_normalize
from rcdml.log import get_logger
from rcdml.models import timm_backbones
from rcdml.models.pooling import GlobalPool
from rcdml.models.registry import backbone_spec
from rcdml.models.weights import load_pretrained

log = get_logger(__name__)


class EmbeddingNet(nn.Module):
    """``backbone`` feature map or tokens -> pooling (:class:`GlobalPool`) -> linear head ->
    optional l2 norm. A ``timm`` backbone runs its ``forward_features`` (the trunk, without
    timm's head).

    With ``freeze_bn`` the backbone's BatchNorm layers keep their running statistics (eval mode)
    even in ``train()``: with the small per-class batches of metric learning, batch statistics
    are too noisy to update pretrained ones. Their affine parameters stay frozen too, unless
    ``train_bn_affine``: then they are backbone parameters like any other (frozen during the
    warm-up, trained after it), as in the reference implementation.
    """

    def __init__(self, backbone: nn.Module, channels: int, embedding_size: int,
                 pooling: str = "avg+max", normalize: bool = True, freeze_bn: bool = False,
                 timm: bool = False, train_bn_affine: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.timm = timm
        self.pool = GlobalPool(pooling, prefix=int(getattr(backbone, "num_prefix_tokens", 0)))
        self.head = nn.Linear(channels, embedding_size)
        nn.init.kaiming_normal_(self.head.weight, mode="fan_out")
        nn.init.zeros_(self.head.bias)
        self.normalize = normalize
        self.freeze_bn = freeze_bn
        # The affine parameters are frozen with the statistics unless asked to train.
        self.frozen_affine = freeze_bn and not train_bn_affine
        if self.frozen_affine:
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
        frozen = ({id(p) for bn in self._batchnorms() for p in bn.parameters()}
                  if self.frozen_affine else set())
        return [p for p in self.backbone.parameters() if id(p) not in frozen]

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Warm-up freezes the backbone; frozen BatchNorm parameters stay frozen either way."""
        for p in self.backbone_parameters():
            p.requires_grad_(trainable)

    def head_parameters(self) -> list[nn.Parameter]:
        """The embedding head's and the pooling's (GeM's exponent) parameters."""
        return [*self.pool.parameters(), *self.head.parameters()]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.timm:
            return timm_backbones.features(self.backbone, images)
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.head(self.pool(self.features(images)))
        if self.normalize:
            out = l2_normalize(out)
        return out


def build_model(cfg: ModelConfig) -> EmbeddingNet:
    """The embedding network of ``cfg``; ``pretrained`` is none, imagenet or a path."""
    spec = backbone_spec(cfg.backbone, cfg.timm_kwargs)
    backbone = spec.build(cfg.pretrained == "imagenet")
    model = EmbeddingNet(backbone, spec.channels, cfg.embedding_size, pooling=cfg.pooling,
                         normalize=cfg.normalize, freeze_bn=cfg.freeze_bn,
                         timm=cfg.backbone.startswith(f"{timm_backbones.FAMILY}:"),
                         train_bn_affine=cfg.train_bn_affine)
    if cfg.pretrained not in ("none", "imagenet"):
        message = load_pretrained(model, os.path.expanduser(cfg.pretrained))
        log.info(message)
    return model
