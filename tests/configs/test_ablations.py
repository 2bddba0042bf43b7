"""The paper's ablations are configs: PA only, PA+PC, PA+PC+PRC and the full method."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from conftest import ROOT
from rcdml.config import load_config
from rcdml.cli.checks import check_training
from rcdml.losses import RCDMLLoss, build_loss

ABLATIONS = os.path.join(ROOT, "configs", "ablations")
TERMS = {
    "pa": {"pa_pos", "pa_neg"},
    "pa_pc": {"pa_pos", "pa_neg"},
    "pa_pc_prc": {"pa_pos", "pa_neg", "prc"},
    "full": {"pa_pos", "pa_neg", "prc", "src"},
}
NUM_CLASSES = 5
# A few Omniglot characters (background 1-964, evaluation 965-1623) and tiny images: fast runs.
SMALL = ["data.train_classes=1-8", "data.eval_classes=965-972", "data.image_size=16",
         "data.resize_size=16", "train.batch_size=16"]


def build(name: str, root: str) -> RCDMLLoss:
    cfg = load_config(os.path.join(ABLATIONS, f"{name}.yaml"), [f"data.root={root}"])
    check_training(cfg)
    assert cfg.output_dir == f"runs/ablations/{name}"
    torch.manual_seed(0)
    return build_loss(cfg.loss, NUM_CLASSES, cfg.model.embedding_size)


def batch(dim: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(12, dim, generator=gen), dim=1)
    return x.requires_grad_(), torch.tensor([0, 0, 0, 1, 1, 1, 3, 3, 3, 4, 4, 4])


@pytest.mark.parametrize("name", sorted(TERMS))
def test_ablation_builds_and_trains_its_terms(name, omniglot_root):
    loss_fn = build(name, omniglot_root)
    x, y = batch(loss_fn.embedding_size)
    loss_fn(x, y).backward()
    assert set(loss_fn.terms) == TERMS[name]
    assert x.grad.abs().sum() > 0 and loss_fn.proxies.grad.abs().sum() > 0


def test_pa_only_is_proxy_anchor_and_correction_changes_it(omniglot_root):
    pa = build("pa", omniglot_root)
    x, y = batch(pa.embedding_size)
    pml = pml_losses.ProxyAnchorLoss(NUM_CLASSES, pa.embedding_size, margin=0.1, alpha=32)
    pml.proxies.data.copy_(pa.proxies.detach())
    torch.testing.assert_close(pa(x, y), pml(x, y), rtol=1e-5, atol=0)
    pa_pc = build("pa_pc", omniglot_root)
    assert torch.equal(pa_pc.proxies, pa.proxies)
    assert abs(float(pa_pc(x, y).detach()) - float(pa(x, y).detach())) > 1e-3


def test_ablations_share_the_omniglot_recipe():
    recipes = {name: load_config(os.path.join(ABLATIONS, f"{name}.yaml")) for name in TERMS}
    base = load_config(os.path.join(ROOT, "configs", "omniglot.yaml"))
    for cfg in recipes.values():
        assert (cfg.model, cfg.data, cfg.train, cfg.optim) == (base.model, base.data, base.train,
                                                               base.optim)


@pytest.mark.slow
def test_pa_only_ablation_trains_end_to_end(tmp_path, omniglot_root):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "train.py"),
         os.path.join(ABLATIONS, "pa.yaml"), f"output_dir={run}", f"data.root={omniglot_root}",
         *SMALL, "train.epochs=1", "train.progress=false"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout + result.stderr
    with open(run / "metrics.jsonl") as f:
        row = [json.loads(line) for line in f][-1]
    assert row["epoch"] == 1
    assert {"train/loss", "train/pa_pos", "train/pa_neg", "eval/R@1"} <= set(row)
    assert "train/prc" not in row and "train/src" not in row
