"""The pytorch-metric-learning baselines: wired from config keys as the reference implementation's recipes,
proxies trained as loss parameters, and the same values as PML used directly."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from pytorch_metric_learning import losses, miners

from rcdml.config import load_config
from rcdml.engine.optim import param_groups
from rcdml.losses import PMLLoss, build_loss, loss_names

C, D = 6, 8
BASELINES = ["proxy_anchor", "proxy_nca", "multi_similarity", "triplet", "contrastive"]


def batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(14, D, generator=gen), dim=1)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 4, 4, 5, 5, 5])
    return x, y


def direct(name: str):
    """The reference implementation's baseline, built from PML directly with literal hyper-parameters."""
    if name == "proxy_anchor":
        return losses.ProxyAnchorLoss(C, D, margin=0.1, alpha=32), None
    if name == "proxy_nca":
        return losses.ProxyNCALoss(C, D, softmax_scale=32), None
    if name == "multi_similarity":
        return losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), \
            miners.MultiSimilarityMiner(epsilon=0.1)
    if name == "triplet":
        return losses.TripletMarginLoss(margin=0.1), \
            miners.TripletMarginMiner(margin=0.1, type_of_triplets="semihard")
    return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5), None


def test_all_baselines_are_registered():
    assert set(BASELINES) | {"rcdml"} <= set(loss_names())


@pytest.mark.parametrize("name", BASELINES)
def test_default_config_builds_the_reference_implementation_recipe(name):
    cfg = load_config(None, [f"loss.name={name}"])
    ours = build_loss(cfg.loss, C, D)
    assert isinstance(ours, PMLLoss) and ours.terms == {}
    ref_fn, ref_miner = direct(name)
    if hasattr(ref_fn, "proxies"):
        ref_fn.proxies.data.copy_(ours.loss_fn.proxies.detach())
    x, y = batch()
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    value = ours(xo, y)
    expected = ref_fn(xr, y, ref_miner(xr, y) if ref_miner is not None else None)
    assert float(expected.detach()) > 0, "the batch must exercise the loss"
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=0)
    value.backward()
    expected.backward()
    torch.testing.assert_close(xo.grad, xr.grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("override, attribute, value", [
    ("loss.margin=0.3", "margin", 0.3),
    ("loss.alpha=8", "alpha", 8.0),
])
def test_proxy_anchor_reads_margin_and_alpha(override, attribute, value):
    cfg = load_config(None, ["loss.name=proxy_anchor", override])
    assert getattr(build_loss(cfg.loss, C, D).loss_fn, attribute) == value


def test_other_keys_reach_their_loss():
    cfg = load_config(None, ["loss.softmax_scale=4", "loss.ms_alpha=3", "loss.ms_beta=40",
                             "loss.ms_base=0.2", "loss.ms_epsilon=0.05", "loss.triplet_margin=0.3",
                             "loss.contrastive_pos_margin=0.1", "loss.contrastive_neg_margin=0.9"])
    built = {}
    for name in BASELINES:
        cfg.loss.name = name
        built[name] = build_loss(cfg.loss, C, D)
    assert built["proxy_nca"].loss_fn.softmax_scale == 4
    ms = built["multi_similarity"]
    assert (ms.loss_fn.alpha, ms.loss_fn.beta, ms.loss_fn.base, ms.miner.epsilon) == (3, 40, 0.2, 0.05)
    triplet = built["triplet"]
    assert triplet.loss_fn.margin == triplet.miner.margin == 0.3
    assert (built["contrastive"].loss_fn.pos_margin, built["contrastive"].loss_fn.neg_margin) == (0.1, 0.9)


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Linear(3, 4)
        self.head = torch.nn.Linear(4, D)
        self.timm = False

    def backbone_parameters(self):
        return list(self.backbone.parameters())

    def head_parameters(self):
        return list(self.head.parameters())


@pytest.mark.parametrize("name", ["proxy_anchor", "proxy_nca"])
def test_proxies_train_in_the_loss_parameter_group(name):
    cfg = load_config(None, [f"loss.name={name}"])
    loss = build_loss(cfg.loss, C, D)
    groups = {g["name"]: g for g in param_groups(_Net(), loss, cfg.optim)}
    assert groups["loss"]["params"] == [loss.loss_fn.proxies]
    assert groups["loss"]["lr"] == cfg.optim.lr * cfg.optim.loss_lr_mult
    assert "loss_fn.proxies" in loss.state_dict()


def test_proxies_keep_their_dtype_whatever_the_embeddings():
    cfg = load_config(None, ["loss.name=proxy_anchor"])
    loss = build_loss(cfg.loss, C, D)
    x, y = batch()
    for dtype in (torch.bfloat16, torch.float64):
        assert loss(x.to(dtype), y).dtype == torch.float32
        assert loss.loss_fn.proxies.dtype == torch.float32


@pytest.mark.parametrize("name", BASELINES)
def test_proxies_are_exposed_through_the_loss_contract(name):
    """The trainer's proxy-proxy histogram reads ``loss.proxies``: PML's own proxy parameter,
    or None for a loss without proxies."""
    loss = build_loss(load_config(None, [f"loss.name={name}"]).loss, C, D)
    inner = getattr(loss.loss_fn, "proxies", None)
    assert loss.proxies is inner and (inner is not None) == (name in ("proxy_anchor", "proxy_nca"))


@pytest.mark.slow
def test_training_without_pytorch_metric_learning(tmp_path):
    """Without the package rcdml imports and builds RCDML; a baseline is a one-line config error."""
    blocked = tmp_path / "blocked" / "pytorch_metric_learning"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('hidden in this test')\n")
    code = ("from rcdml.config import ConfigError, load_config\n"
            "from rcdml.losses import build_loss\n"
            "build_loss(load_config(None, []).loss, 6, 8)\n"
            "try:\n"
            "    build_loss(load_config(None, ['loss.name=proxy_anchor']).loss, 6, 8)\n"
            "except ConfigError as e:\n"
            "    print(e)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": f"{blocked.parent}{os.pathsep}{root}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            timeout=120, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("loss.name: proxy_anchor needs pytorch-metric-learning")
