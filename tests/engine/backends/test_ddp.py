"""DDP backend: frozen BatchNorm statistics are not broadcast before every forward."""
from __future__ import annotations

import pytest
from torch import nn

from rcdml.engine.backends.ddp import _buffers_change
from rcdml.models.embedding import EmbeddingNet


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_buffers_broadcast_only_when_batchnorm_trains(freeze_bn):
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model = EmbeddingNet(backbone, 4, 8, freeze_bn=freeze_bn).eval()
    assert _buffers_change(model) is not freeze_bn
    assert not model.training, "the check leaves the module's mode as it was"
