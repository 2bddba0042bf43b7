"""timm backbones: any timm name builds, every pooling of its kind computes what it says, an
unknown name, refused arguments or a pooling of the other kind are one-line config errors before
any work, and a ViT and a ResNet train end to end, under DDP exactly like one process. Tiny
models only (no download)."""
from __future__ import annotations

import pytest
import torch

from rcdml.models.registry import check_model_config
from runs import assert_ddp_equals_one_process
from rcdml.config import ConfigError, load_config
from rcdml.models import build_model

# A 2-block ViT of width 32 on 16 px inputs (4 px patches: 16 patch tokens and a class token).
TINY_VIT = ["model.backbone=timm:vit_tiny_patch16_224",
            "model.timm_kwargs={img_size: 16, patch_size: 4, depth: 2, embed_dim: 32, num_heads: 2}"]
TINY_RESNET = ["model.backbone=timm:resnet10t"]
SMALL = ["data.image_size=16", "data.resize_size=16", "model.embedding_size=8",
         "model.normalize=false"]


def config(*overrides: str):
    return load_config(None, [*SMALL, *overrides])


def checked(*overrides: str):
    cfg = config(*overrides)
    check_model_config(cfg)
    return cfg


@pytest.mark.parametrize("pooling", ["cls", "avg", "avg+cls", "gem"])
def test_vit_poolings(pooling):
    torch.manual_seed(0)
    model = build_model(checked(*TINY_VIT, f"model.pooling={pooling}").model).eval()
    x = torch.randn(3, 3, 16, 16)
    tokens = model.backbone.forward_features(x)
    assert tokens.shape == (3, 17, 32) and model.backbone.num_prefix_tokens == 1
    cls, patches = tokens[:, 0], tokens[:, 1:]
    gem = patches.clamp(min=1e-6).pow(3).mean(1).pow(1 / 3)
    pooled = {"cls": cls, "avg": patches.mean(1), "avg+cls": cls + patches.mean(1),
              "gem": gem}[pooling]
    torch.testing.assert_close(model(x), model.head(pooled))


@pytest.mark.parametrize("pooling", ["avg", "max", "avg+max", "gem"])
def test_cnn_poolings(pooling):
    torch.manual_seed(0)
    model = build_model(checked(*TINY_RESNET, f"model.pooling={pooling}").model).eval()
    x = torch.randn(2, 3, 32, 32)
    fmap = model.backbone.forward_features(x)
    assert fmap.ndim == 4 and model.head.in_features == fmap.shape[1] == 512
    pooled = {"avg": fmap.mean((2, 3)), "max": fmap.amax((2, 3)),
              "avg+max": fmap.mean((2, 3)) + fmap.amax((2, 3)),
              "gem": fmap.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)}[pooling]
    torch.testing.assert_close(model(x), model.head(pooled))


def test_gem_exponent_learns_with_the_head():
    model = build_model(config(*TINY_VIT, "model.pooling=gem").model)
    assert model.pool.p.item() == 3.0
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert model.pool.p.grad is not None and model.pool.p.grad.abs() > 0
    assert any(p is model.pool.p for p in model.head_parameters())


def test_register_tokens_are_not_patch_tokens():
    cfg = checked("model.backbone=timm:vit_tiny_patch16_224", "model.pooling=avg",
                  "model.timm_kwargs={img_size: 16, patch_size: 4, depth: 1, embed_dim: 32, "
                  "num_heads: 2, reg_tokens: 4}")
    model = build_model(cfg.model).eval()
    x = torch.randn(2, 3, 16, 16)
    tokens = model.backbone.forward_features(x)
    assert tokens.shape[1] == 21 and model.pool.prefix == 5
    torch.testing.assert_close(model(x), model.head(tokens[:, 5:].mean(1)))


@pytest.mark.parametrize("overrides, message", [
    ([*TINY_VIT, "model.pooling=max"],
     "model.pooling: max does not apply to timm:vit_tiny_patch16_224, whose output is tokens; "
     "allowed: cls, avg, avg+cls, gem"),
    ([*TINY_VIT, "model.pooling=avg+max"], "model.pooling: avg+max does not apply"),
    ([*TINY_RESNET, "model.pooling=cls"],
     "model.pooling: cls does not apply to timm:resnet10t, whose output is feature maps; "
     "allowed: avg, max, avg+max, gem"),
    (["model.backbone=resnet18", "model.pooling=avg+cls"], "model.pooling: avg+cls does not apply"),
    (["model.backbone=timm:vit_tiny_patch16_224", "model.pooling=cls",
      "model.timm_kwargs={img_size: 16, patch_size: 4, depth: 1, embed_dim: 32, num_heads: 2, "
      "class_token: false}"], "whose output is tokens without a class token"),
    (["model.backbone=timm:vit_tiny_patch16_22"],
     "model.backbone: timm:vit_tiny_patch16_22 is not a timm model (close: vit_tiny_patch16_224"),
    (["model.backbone='timm:'"], "model.backbone: timm: needs a model name"),
    (["model.backbone=timm"], "model.backbone: 'timm' is not allowed; allowed values: bn_inception"),
    ([*TINY_VIT, "model.timm_kwargs.bogus=1"],
     "model.timm_kwargs: timm.create_model('vit_tiny_patch16_224'"),
    ([*TINY_VIT, "data.image_size=32", "data.resize_size=32", "model.pooling=cls"],
     "data.image_size: timm:vit_tiny_patch16_224 does not take 32 px inputs"),
    ([*TINY_VIT, "model.timm_kwargs={img_size:16}"],
     "model.timm_kwargs: 'img_size:16' is not an argument name"),
    (["model.backbone=resnet18", "model.timm_kwargs.img_size=16"],
     "model.timm_kwargs: {'img_size': 16} is only read by timm backbones"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        checked(*overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


# Options that change how the network runs, not what it computes: on the DDP side only, so the
# comparison also checks that they give the eager single process's losses (aot_eager: graph
# capture and AOTAutograd without inductor's C++ build, which takes minutes on a small CPU).
COMPILED = ("train.compile=true", "train.compile_backend=aot_eager")


@pytest.mark.slow
def test_tiny_vit_trains_and_two_compiled_checkpointed_ranks_equal_one_eager_process(tmp_path):
    """With layer decay, and a warm-up epoch (backbone frozen, then trained)."""
    vit = [*TINY_VIT, "model.pooling=avg+cls", "optim.layer_decay=0.75", "train.warmup_epochs=1"]
    assert_ddp_equals_one_process(tmp_path, *vit,
                                  ddp_args=(*COMPILED, "train.grad_checkpointing=true"))


@pytest.mark.slow
def test_timm_resnet_trains_and_two_compiled_channels_last_ranks_equal_one_process(tmp_path):
    assert_ddp_equals_one_process(tmp_path, *TINY_RESNET, "model.pooling=gem",
                                  ddp_args=(*COMPILED, "train.channels_last=true"))
