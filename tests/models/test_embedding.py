"""Embedding networks: every registered backbone with pooling, head, normalisation, frozen
BatchNorm, warm-up freezing, and pretrained weights from a file (never downloaded here)."""
from __future__ import annotations

import pytest
import torch

from rcdml.config import ModelConfig, OptimConfig
from rcdml.engine.optim import param_groups
from rcdml.models import backbone_names, backbone_spec, build_model


@pytest.mark.parametrize("name, size", [("resnet18", 32), ("resnet50", 32), ("resnet101", 32),
                                        ("googlenet", 64), ("bn_inception", 64), ("conv4", 28)])
def test_every_backbone_embeds(name, size):
    torch.manual_seed(0)
    # Training mode: BatchNorm normalises with batch statistics (at initialisation its running
    # statistics are the identity, under which GoogLeNet's std-0.01 init shrinks activations
    # to ~1e-10, below the normalisation's epsilon).
    model = build_model(ModelConfig(backbone=name, embedding_size=16, freeze_bn=False)).train()
    out = model(torch.randn(4, 3, size, size))
    assert out.shape == (4, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    assert model.head.in_features == backbone_spec(name).channels


def test_registry_lists_the_paper_and_torchvision_backbones():
    assert {"bn_inception", "googlenet", "resnet18", "resnet50", "resnet101", "conv4"} <= set(backbone_names())
    assert backbone_spec("bn_inception").input_style == "bn_inception"
    assert backbone_spec("resnet50").input_style == "imagenet"


@pytest.mark.parametrize("pooling", ["avg", "max", "avg+max"])
def test_pooling_and_unnormalised_output(pooling):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="conv4", embedding_size=8, pooling=pooling,
                                    normalize=False, freeze_bn=False)).eval()
    x = torch.randn(3, 3, 56, 56)
    fmap = model.backbone(x)
    pooled = {"avg": fmap.mean((2, 3)), "max": fmap.amax((2, 3)),
              "avg+max": fmap.mean((2, 3)) + fmap.amax((2, 3))}[pooling]
    torch.testing.assert_close(model(x), model.head(pooled))


def test_head_is_kaiming_initialised():
    torch.manual_seed(0)
    head = build_model(ModelConfig(backbone="resnet18", embedding_size=512)).head
    # kaiming normal, fan_out: std = sqrt(2 / out_features)
    assert head.weight.std().item() == pytest.approx((2 / 512) ** 0.5, rel=0.05)
    assert torch.count_nonzero(head.bias) == 0


def test_frozen_batchnorm_keeps_statistics_and_parameters():
    model = build_model(ModelConfig(backbone="resnet18", embedding_size=8, freeze_bn=True)).train()
    bn = model.backbone[1]
    before = bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert not bn.weight.requires_grad
    backbone = {id(p) for p in param_groups(model, torch.nn.Linear(1, 1),
                                            OptimConfig())[0]["params"]}
    assert id(bn.weight) not in backbone and id(model.backbone[0].weight) in backbone


def test_warmup_freezes_the_backbone_but_never_unfreezes_frozen_batchnorm():
    model = build_model(ModelConfig(backbone="resnet18", embedding_size=8, freeze_bn=True))
    model.set_backbone_trainable(False)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.set_backbone_trainable(True)
    assert model.backbone[0].weight.requires_grad and not model.backbone[1].weight.requires_grad


def test_train_bn_affine_trains_scale_and_shift_after_the_warmup_with_frozen_statistics():
    """The reference implementation's recipe: the running statistics stay frozen, the affine
    parameters train with the backbone (frozen during the warm-up), at the backbone's lr and
    with its weight decay."""
    from rcdml.config import ConfigError, load_config
    from rcdml.models.registry import check_model_config

    model = build_model(ModelConfig(backbone="resnet18", embedding_size=8, freeze_bn=True,
                                    train_bn_affine=True)).train()
    bn = model.backbone[1]
    model.set_backbone_trainable(False)
    assert not bn.weight.requires_grad and not bn.bias.requires_grad
    model.set_backbone_trainable(True)
    assert bn.weight.requires_grad and bn.bias.requires_grad
    before = bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3).sum().backward()
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0
    groups = param_groups(model, torch.nn.Linear(1, 1), OptimConfig(lr=1e-4, weight_decay=1e-4))
    backbone = next(g for g in groups if g["name"] == "backbone")
    assert {id(bn.weight), id(bn.bias)} <= {id(p) for p in backbone["params"]}
    assert (backbone["lr"], backbone["weight_decay"]) == (1e-4, 1e-4)
    # ResNet-18's 20 convolutions and 20 BatchNorm layers (scale and shift each): all train.
    batchnorms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(backbone["params"]) == len(list(model.backbone.parameters())) == 60
    assert len(batchnorms) == 20
    with pytest.raises(ConfigError, match=r"^model.train_bn_affine: true applies with "
                                          r"model.freeze_bn: true"):
        check_model_config(load_config(None, ["model.backbone=resnet18", "model.freeze_bn=false",
                                              "model.train_bn_affine=true"]))


def test_pretrained_weights_from_a_file(tmp_path):
    torch.manual_seed(1)
    source = build_model(ModelConfig(backbone="resnet18", embedding_size=8))
    state = {**source.backbone.state_dict(), "fc.weight": torch.zeros(10, 512)}
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    torch.manual_seed(2)
    loaded = build_model(ModelConfig(backbone="resnet18", embedding_size=8,
                                     pretrained=str(tmp_path / "w.pth")))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


def test_pretrained_file_of_another_network_is_an_error_naming_keys(tmp_path):
    other = build_model(ModelConfig(backbone="conv4", embedding_size=8))
    torch.save(other.backbone.state_dict(), tmp_path / "conv4.pth")
    with pytest.raises(ValueError, match="does not fit the backbone; missing keys"):
        build_model(ModelConfig(backbone="resnet18", pretrained=str(tmp_path / "conv4.pth")))

