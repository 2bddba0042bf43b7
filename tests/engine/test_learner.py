"""train.grad_checkpointing, train.channels_last and train.compile change how the network runs,
not what it computes: each gives the eager network's loss and gradients; a combination a
backbone cannot run is a config error before any work."""
from __future__ import annotations

import pytest
import torch

from rcdml.config import ConfigError, load_config
from rcdml.engine.backends import check_compile
from rcdml.engine.learner import prepare_network
from rcdml.models import build_model
from rcdml.models.registry import check_model_config

VIT = ["model.backbone=timm:vit_tiny_patch16_224", "model.pooling=avg+cls",
       "model.timm_kwargs={img_size: 16, patch_size: 4, depth: 2, embed_dim: 32, num_heads: 2}"]


def _loss_and_grads(*overrides: str, size: int = 16):
    cfg = load_config(None, ["model.embedding_size=8", f"data.image_size={size}",
                             f"data.resize_size={size}", *overrides])
    torch.manual_seed(0)
    model = prepare_network(build_model(cfg.model), cfg.train).train()
    images = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(1))
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    loss = model(images).pow(3).sum()
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("base, option", [
    (VIT, "train.grad_checkpointing=true"),
    (["model.backbone=timm:resnet10t", "model.freeze_bn=false"], "train.grad_checkpointing=true"),
    (["model.backbone=timm:resnet10t", "model.freeze_bn=false"], "train.channels_last=true"),
    (["model.backbone=conv4", "model.freeze_bn=false"], "train.channels_last=true"),
])
def test_option_keeps_loss_and_gradients(base, option):
    size = 32 if "resnet" in base[0] else 16
    loss, grads = _loss_and_grads(*base, size=size)
    other_loss, other_grads = _loss_and_grads(*base, option, size=size)
    torch.testing.assert_close(other_loss, loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == other_grads.keys()
    for name in grads:
        # Relative to the whole gradient: channels-last convolutions sum in another order, and
        # BatchNorm in training mode amplifies that rounding (measured: up to 7e-6 of the max).
        # (timm's ResNets zero-initialise each block's last BatchNorm: some gradients are 0.)
        error = (other_grads[name] - grads[name]).norm()
        assert error <= 1e-4 * grads[name].norm() + 1e-9, (name, float(error))


def test_grad_checkpointing_recomputes_the_timm_blocks():
    cfg = load_config(None, [*VIT, "train.grad_checkpointing=true"])
    model = prepare_network(build_model(cfg.model), cfg.train)
    assert model.backbone.grad_checkpointing


def test_compile_runs_the_network_through_dynamo_and_keeps_the_eager_names():
    from torch._dynamo.utils import counters

    cfg = load_config(None, [*VIT, "train.compile=true", "train.compile_backend=aot_eager"])
    eager = build_model(cfg.model)
    model = prepare_network(build_model(cfg.model), cfg.train)
    assert model.state_dict().keys() == eager.state_dict().keys()
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in eager.named_parameters()]
    counters.clear()
    model(torch.randn(2, 3, 16, 16))
    assert counters["stats"]["unique_graphs"] >= 1


@pytest.mark.parametrize("overrides, message", [
    ([*VIT, "train.channels_last=true"], "train.channels_last: true applies to convolutional "
     "backbones, not timm:vit_tiny_patch16_224, whose output is tokens; allowed: false"),
    (["model.backbone=resnet18", "train.grad_checkpointing=true"],
     "train.grad_checkpointing: true needs a timm backbone"),
])
def test_options_a_backbone_cannot_run_are_config_errors(overrides, message):
    cfg = load_config(None, ["data.image_size=16", "data.resize_size=16", *overrides])
    with pytest.raises(ConfigError, match=message):
        check_model_config(cfg)


def test_unknown_compile_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="train.compile_backend: 'fast' is not a torch.compile "
                                          "backend; allowed: aot_eager"):
        check_compile("fast")
    check_compile("aot_eager")
