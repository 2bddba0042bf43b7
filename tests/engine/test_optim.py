"""The schedule is a function of (epoch, total epochs) on the config's base learning rates, so a
resumed run takes the new config's values from the resume point."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from rcdml.config import ConfigError, load_config
from rcdml.engine.optim import build_scheduler


def _optimizer(lr: float) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    return torch.optim.AdamW([{"name": n, "params": [p], "lr": lr}
                              for n, p in zip(("backbone", "head", "loss"), params)], lr=lr)


def _lrs(*overrides: str, epochs: int, start: int, steps: int) -> list[float]:
    cfg = load_config(None, list(overrides)).optim
    optimizer = _optimizer(1e-4)  # a resumed optimizer carries the old run's learning rates
    scheduler = build_scheduler(optimizer, cfg, epochs, start)
    seen = [optimizer.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer.step() between the scheduler's steps here
        for _ in range(steps):
            scheduler.step()
            seen.append(optimizer.param_groups[0]["lr"])
    return seen


def test_longer_cosine_run_recomputes_the_curve_from_the_resume_point():
    resumed = _lrs("optim.scheduler=cosine", "optim.lr=0.01", epochs=4, start=2, steps=1)
    straight = _lrs("optim.scheduler=cosine", "optim.lr=0.01", epochs=4, start=0, steps=3)
    assert resumed == pytest.approx(straight[2:])
    assert resumed[0] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert resumed[0] > 0


def test_step_schedule_applies_the_new_base_lr():
    assert _lrs("optim.lr=0.01", "optim.step_size=2", "optim.gamma=0.5", epochs=6, start=3,
                steps=1) == pytest.approx([0.005, 0.0025])


def _groups(*overrides: str):
    from rcdml.engine.optim import param_groups
    from rcdml.models import build_model

    cfg = load_config(None, ["model.backbone=timm:vit_tiny_patch16_224", "model.pooling=gem",
                             "model.timm_kwargs={img_size: 16, patch_size: 4, depth: 2, "
                             "embed_dim: 32, num_heads: 2}", "model.embedding_size=8",
                             "optim.lr=0.01", "optim.weight_decay=0.05", "optim.head_lr_mult=2",
                             "optim.loss_lr_mult=10", *overrides])
    model = build_model(cfg.model)
    loss = torch.nn.Linear(2, 2)
    groups = param_groups(model, loss, cfg.optim)
    names = {id(p): n for n, p in [*model.named_parameters(), *(("loss." + n, p) for n, p in
                                                               loss.named_parameters())]}
    return cfg, model, {g["name"]: g for g in groups}, {
        names[id(p)]: g for g in groups for p in g["params"]}


def test_layer_decay_gives_each_vit_layer_its_learning_rate():
    """Depth 2: patch embedding (layer 0), blocks 0 and 1 (the final norm with the last block),
    then the embedding head on top: lr x 0.75^3, ^2, ^1, and head_lr_mult."""
    cfg, model, groups, of = _groups("optim.layer_decay=0.75")
    every = [n for n, p in model.named_parameters() if p.requires_grad] + ["loss.weight", "loss.bias"]
    assert sorted(of) == sorted(every)  # each parameter in exactly one group
    assert sum(len(g["params"]) for g in groups.values()) == len(every)
    expected = {"backbone.patch_embed.proj.weight": 0.01 * 0.75 ** 3,
                "backbone.cls_token": 0.01 * 0.75 ** 3,
                "backbone.blocks.0.attn.qkv.weight": 0.01 * 0.75 ** 2,
                "backbone.blocks.1.mlp.fc2.weight": 0.01 * 0.75,
                "backbone.norm.weight": 0.01 * 0.75,
                "head.weight": 0.02, "pool.p": 0.02, "loss.weight": 0.1}
    for name, lr in expected.items():
        assert of[name]["lr"] == pytest.approx(lr), name
    # The default exemptions of a timm backbone: 1-d parameters and its no_weight_decay() names.
    decays = {n: of[n]["weight_decay"] for n in ("backbone.cls_token", "backbone.pos_embed",
                                                 "backbone.blocks.0.norm1.weight",
                                                 "backbone.blocks.0.attn.qkv.bias", "head.bias",
                                                 "pool.p", "backbone.blocks.0.attn.qkv.weight",
                                                 "head.weight", "loss.weight")}
    assert decays == {**dict.fromkeys(list(decays)[:6], 0.0),
                      **dict.fromkeys(list(decays)[6:], 0.05)}
    assert of["backbone.blocks.0.attn.qkv.bias"]["name"] == "backbone.layer1.no_decay"
    # The schedule multiplies each group's own base rate.
    optimizer = torch.optim.AdamW(list(groups.values()), lr=cfg.optim.lr)
    build_scheduler(optimizer, load_config(None, ["optim.lr=0.01", "optim.head_lr_mult=2",
                                                  "optim.loss_lr_mult=10", "optim.step_size=1",
                                                  "optim.gamma=0.5"]).optim, 4, start_epoch=1)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["backbone.layer0"] == pytest.approx(0.5 * 0.01 * 0.75 ** 3)
    assert lrs["backbone.layer2.no_decay"] == pytest.approx(0.5 * 0.01 * 0.75)
    assert lrs["head"] == pytest.approx(0.5 * 0.02) and lrs["loss"] == pytest.approx(0.05)


def test_no_weight_decay_patterns_replace_the_default():
    _, _, groups, of = _groups("optim.no_weight_decay=['backbone.pos_embed', '*.bias']")
    assert sorted(groups) == ["backbone", "backbone.no_decay", "head", "head.no_decay", "loss"]
    assert of["backbone.pos_embed"]["weight_decay"] == of["head.bias"]["weight_decay"] == 0.0
    assert of["backbone.cls_token"]["weight_decay"] == of["backbone.norm.weight"]["weight_decay"] == 0.05


def test_built_in_backbones_keep_the_reference_groups():
    from rcdml.engine.optim import check_optim_config
    from rcdml.engine.optim import param_groups
    from rcdml.models import build_model

    cfg = load_config(None, ["model.backbone=conv4", "model.embedding_size=8"])
    groups = param_groups(build_model(cfg.model), torch.nn.Linear(2, 2), cfg.optim)
    assert [(g["name"], g["weight_decay"]) for g in groups] == [
        ("backbone", 1e-4), ("head", 1e-4), ("loss", 1e-4)]
    with pytest.raises(ConfigError, match="optim.layer_decay: 0.75 needs a timm backbone"):
        check_optim_config(load_config(None, ["model.backbone=conv4", "optim.layer_decay=0.75"]))
