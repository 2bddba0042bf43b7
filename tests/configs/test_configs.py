"""The dataset recipes in configs/ load as typed configs with the protocol of their dataset."""
from __future__ import annotations

import dataclasses
import os

import pytest

from rcdml.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("name, ks", [
    ("cub", [1, 2, 4, 8, 16, 32]), ("cars", [1, 2, 4, 8, 16, 32]), ("sop", [1, 10, 100, 1000]),
    ("inshop", [1, 10, 20, 30, 40, 50]), ("omniglot", [1, 2, 4, 8]),
])
def test_recipe_loads_with_its_protocol(name, ks):
    cfg = load_config(os.path.join(ROOT, "configs", f"{name}.yaml"))
    assert cfg.data.name == name and cfg.eval.ks == ks
    assert cfg.data.train_classes is None and cfg.data.eval_classes is None
    assert cfg.data.loader == "auto"


@pytest.mark.parametrize("name", ["cub", "cars", "sop", "inshop"])
def test_paper_recipes_use_the_reference_implementation_settings(name):
    cfg = load_config(os.path.join(ROOT, "configs", f"{name}.yaml"))
    assert (cfg.model.backbone, cfg.model.embedding_size, cfg.model.pretrained) == (
        "bn_inception", 512, "imagenet")
    assert cfg.model.freeze_bn and cfg.train.batch_size == 128 and cfg.train.warmup_epochs == 1
    # After the warm-up the reference trains every backbone parameter, BatchNorm's scale and
    # shift included, its running statistics staying frozen; its crop is torchvision's
    # RandomResizedCrop(224), area (0.08, 1.0).
    assert cfg.model.train_bn_affine and cfg.data.crop_scale == [0.08, 1.0]
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.loss_lr_mult) == ("adamw", 1e-4, 1000.0)
    assert (cfg.data.image_size, cfg.data.resize_size) == (224, 256)
    assert cfg.loss.prc_weight == (0.05 if name == "cub" else 0.02)
    # The reference command gives no --IPC: random batches, not P classes x K images.
    assert cfg.data.sampler == "random"


@pytest.mark.parametrize("name, ks, epochs, decay", [
    ("cub_vits16", [1, 2, 4, 8, 16, 32], 100, 0.01), ("sop_vits16", [1, 10, 100, 1000], 150, 1e-4)])
def test_vit_recipes_use_the_hier_dino_protocol(name, ks, epochs, decay):
    from rcdml.models.registry import check_model_config

    cfg = load_config(os.path.join(ROOT, "configs", f"{name}.yaml"))
    assert cfg.data.name == name.split("_")[0] and cfg.eval.ks == ks
    assert (cfg.model.backbone, cfg.model.embedding_size, cfg.model.pooling) == (
        "timm:vit_small_patch16_224.dino", 384, "cls")
    assert cfg.model.pretrained.endswith("dino_deitsmall16_pretrain.pth")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.scheduler) == (
        "adamw", 5e-6, decay, "none")
    assert (cfg.train.batch_size, cfg.data.samples_per_class, cfg.train.epochs) == (180, 2, epochs)
    assert (cfg.data.image_size, cfg.data.resize_size, cfg.data.crop_scale) == (224, 256, [0.2, 1.0])
    # The weights file is the user's to download; everything else passes the checks.
    cfg.model.pretrained = "none"
    check_model_config(cfg)


def test_omniglot_vit_recipe_is_omniglots_protocol_with_a_small_vit():
    from rcdml.models.registry import check_model_config

    vit = load_config(os.path.join(ROOT, "configs", "omniglot_vit.yaml"))
    conv4 = load_config(os.path.join(ROOT, "configs", "omniglot.yaml"))
    assert vit.data == conv4.data and vit.eval == conv4.eval
    # Multi-Similarity with its defaults, the loss the ViT learns with (the recipe's comment).
    assert vit.loss == dataclasses.replace(conv4.loss, name="multi_similarity")
    assert (vit.train.epochs, vit.train.batch_size) == (conv4.train.epochs, conv4.train.batch_size)
    assert vit.model.backbone.startswith("timm:vit") and vit.model.timm_kwargs["patch_size"] == 4
    check_model_config(vit)
