"""The dataset recipes in configs/ load as typed configs with the protocol of their dataset."""
from __future__ import annotations

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
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.loss_lr_mult) == ("adamw", 1e-4, 1000.0)
    assert (cfg.data.image_size, cfg.data.resize_size) == (224, 256)
    assert cfg.loss.prc_weight == (0.05 if name == "cub" else 0.02)
    # The reference command gives no --IPC: random batches, not P classes x K images.
    assert cfg.data.sampler == "random"
