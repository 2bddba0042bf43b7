"""RCDMLLoss against the per-class-loop formulation of DESIGN.md section 1 (in float64), on
batches with absent classes, one-sample classes and a single class, in both absent-proxy modes."""
from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from torch.utils.flop_counter import FlopCounterMode

from rcdml.losses import RCDMLLoss
from rcdml.losses.reference import rcdml_loss_loop

LABELS = {
    # classes 1, 3, 6, 8 absent; 4 and 7 have one sample each
    "absent_and_singletons": (9, [0, 0, 0, 2, 2, 4, 5, 5, 5, 5, 7, 0, 2]),
    "one_class": (6, [3] * 7),
    "all_singletons": (12, [5, 1, 9, 0, 11]),
    "every_class_present": (4, [0, 1, 2, 3, 3, 2, 1, 0, 0]),
}
SETTINGS = {
    "defaults": {},
    "cub_recipe": {"prc_weight": 0.05, "margin": 0.2, "alpha": 16.0},
    "no_pc": {"pc_momentum": 0.0},
    "full_pc": {"pc_momentum": 1.0},
    "pa_only": {"pc_momentum": 0.0, "prc_weight": 0.0, "src_weight": 0.0},
    # The opt-in extensions of docs/method.md ("Extensions"), alone and together.
    "negatives_present": {"negatives": "present"},
    "prc_present": {"prc_proxies": "present"},
    "both_extensions": {"negatives": "present", "prc_proxies": "present"},
}


def inputs(num_classes: int, labels: list[int], dim: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # Raw, unnormalised embeddings of varied norms: proxy correction mixes raw x into proxies.
    x = torch.randn(len(labels), dim, generator=gen) * torch.rand(len(labels), 1, generator=gen) * 3
    return x, torch.tensor(labels)


def vectorised(x, y, num_classes, **kwargs):
    torch.manual_seed(1)
    loss_fn = RCDMLLoss(num_classes, x.shape[1], **kwargs)
    x = x.clone().requires_grad_()
    loss = loss_fn(x, y)
    gx, gp = torch.autograd.grad(loss, [x, loss_fn.proxies])
    return loss_fn, loss, gx, gp


def looped(x, y, proxies, **kwargs):
    x = x.double().requires_grad_()
    p = proxies.detach().double().requires_grad_()
    loss, terms = rcdml_loss_loop(x, y, p, **kwargs)
    gx, gp = torch.autograd.grad(loss, [x, p])
    return loss, terms, gx, gp


def assert_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Elementwise to ``rtol`` relative, entries near zero judged against the largest entry
    (at least 1e-6: a gradient that is zero in exact arithmetic comes out as rounding noise)."""
    expected = expected.double()
    atol = rtol * max(float(expected.abs().max()), 1e-6)
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("absent", ["zero", "keep"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("case", sorted(LABELS))
def test_value_and_gradients_match_the_loop_formula(case, setting, absent):
    num_classes, labels = LABELS[case]
    kwargs = {**SETTINGS[setting], "absent_proxies": absent}
    x, y = inputs(num_classes, labels)
    loss_fn, loss, gx, gp = vectorised(x, y, num_classes, **kwargs)
    ref, ref_terms, ref_gx, ref_gp = looped(x, y, loss_fn.proxies, **kwargs)
    assert loss.dtype == torch.float32
    assert_rel(loss.detach(), ref.detach())
    assert_rel(gx, ref_gx)
    assert_rel(gp, ref_gp)
    for name, value in loss_fn.terms.items():
        assert_rel(value, ref_terms[name].detach())


def test_float64_agrees_to_rounding():
    num_classes, labels = LABELS["absent_and_singletons"]
    x, y = inputs(num_classes, labels)
    torch.manual_seed(1)
    loss_fn = RCDMLLoss(num_classes, x.shape[1]).double()
    xd = x.double().requires_grad_()
    loss = loss_fn(xd, y)
    ref, _, ref_gx, ref_gp = looped(x, y, loss_fn.proxies)
    gx, gp = torch.autograd.grad(loss, [xd, loss_fn.proxies])
    assert loss.dtype == torch.float64
    assert_rel(loss.detach(), ref.detach(), rtol=1e-12)
    assert_rel(gx, ref_gx, rtol=1e-10)
    assert_rel(gp, ref_gp, rtol=1e-10)


def test_many_absent_classes_match_the_loop_formula():
    """C=1500 with 6 present classes: the absent classes' constant negative term is exact."""
    gen = torch.Generator().manual_seed(3)
    y = torch.tensor([17, 17, 17, 17, 902, 902, 5, 1499, 1499, 1499, 333, 333])
    x = torch.randn(len(y), 8, generator=gen)
    for absent in ("zero", "keep"):
        loss_fn, loss, gx, gp = vectorised(x, y, 1500, absent_proxies=absent)
        ref, _, ref_gx, ref_gp = looped(x, y, loss_fn.proxies, absent_proxies=absent)
        assert_rel(loss.detach(), ref.detach())
        assert_rel(gx, ref_gx)
        assert_rel(gp, ref_gp)


def test_absent_proxies_get_no_gradient_under_zero_and_one_under_keep():
    num_classes, labels = LABELS["absent_and_singletons"]
    x, y = inputs(num_classes, labels)
    absent = [c for c in range(num_classes) if c not in labels]
    _, _, _, gp_zero = vectorised(x, y, num_classes, absent_proxies="zero")
    _, _, _, gp_keep = vectorised(x, y, num_classes, absent_proxies="keep")
    assert torch.count_nonzero(gp_zero[absent]) == 0
    assert torch.count_nonzero(gp_zero[sorted(set(labels))]) > 0
    assert bool((gp_keep[absent].abs().sum(1) > 0).all())


def test_pa_only_under_keep_is_proxy_anchor():
    """pc_momentum=0, no constraints, absent_proxies=keep is Proxy-Anchor: PML's implementation
    gives the same value and gradients for the same proxies."""
    num_classes, labels = LABELS["absent_and_singletons"]
    x, y = inputs(num_classes, labels)
    loss_fn, loss, gx, gp = vectorised(x, y, num_classes, pc_momentum=0.0, prc_weight=0.0,
                                       src_weight=0.0, absent_proxies="keep")
    pml = pml_losses.ProxyAnchorLoss(num_classes, x.shape[1], margin=0.1, alpha=32).double()
    pml.proxies.data.copy_(loss_fn.proxies.detach().double())
    xd = x.double().requires_grad_()
    ref = pml(xd, y)
    ref_gx, ref_gp = torch.autograd.grad(ref, [xd, pml.proxies])
    assert_rel(loss.detach(), ref.detach())
    assert_rel(gx, ref_gx)
    assert_rel(gp, ref_gp)


def test_terms_are_detached_and_follow_the_weights():
    x, y = inputs(*LABELS["absent_and_singletons"])
    loss_fn = RCDMLLoss(9, x.shape[1])
    loss = loss_fn(x.requires_grad_(), y)
    assert set(loss_fn.terms) == {"pa_pos", "pa_neg", "prc", "src"}
    assert all(not t.requires_grad for t in loss_fn.terms.values())
    total = (loss_fn.terms["pa_pos"] + loss_fn.terms["pa_neg"] + 0.02 * loss_fn.terms["prc"]
             + 0.01 * loss_fn.terms["src"])
    torch.testing.assert_close(loss.detach(), total)
    loss_fn = RCDMLLoss(9, x.shape[1], prc_weight=0.0, src_weight=0.0)
    loss_fn(x, y)
    assert set(loss_fn.terms) == {"pa_pos", "pa_neg"}


def proxy_flops(num_classes: int, absent: str) -> int:
    y = torch.arange(16) % 4 * 7
    x = torch.randn(16, 32, requires_grad=True)
    loss_fn = RCDMLLoss(num_classes, 32, absent_proxies=absent)
    with FlopCounterMode(display=False) as counter:
        loss_fn(x, y).backward()
    return counter.get_total_flops()


def test_zero_mode_cost_does_not_grow_with_num_classes():
    assert proxy_flops(32, "zero") == proxy_flops(32_000, "zero") > 0
    # The counter does see proxy-sized work: under keep every proxy is in the formula.
    assert proxy_flops(3_200, "keep") > 100 * proxy_flops(32, "keep")


def test_keep_mode_prc_is_computed_in_blocks(monkeypatch):
    """PRC over more proxies than one block holds equals the single-block computation."""
    import rcdml.losses.rcdml as module

    x, y = inputs(40, [0, 0, 3, 3, 3, 39, 12])
    _, loss, gx, gp = vectorised(x, y, 40, absent_proxies="keep")
    monkeypatch.setattr(module, "_PRC_BLOCK_ENTRIES", 7 * 40)  # blocks of 7 rows: 6 blocks
    _, blocked, bgx, bgp = vectorised(x, y, 40, absent_proxies="keep")
    assert_rel(blocked.detach(), loss.detach(), rtol=1e-6)
    assert_rel(bgx, gx, rtol=1e-6)
    assert_rel(bgp, gp, rtol=1e-6)


def test_proxies_are_kaiming_normal_fan_out():
    torch.manual_seed(0)
    proxies = RCDMLLoss(2000, 256).proxies.detach()
    assert proxies.shape == (2000, 256)
    assert abs(float(proxies.mean())) < 1e-3
    assert float(proxies.std()) == pytest.approx(math.sqrt(2.0 / 2000), rel=0.01)


@pytest.mark.parametrize("num_classes, dim", [(964, 128), (100, 512)])
def test_proxy_init_norm_fixes_every_row_norm_whatever_the_number_of_classes(num_classes, dim):
    torch.manual_seed(0)
    kaiming = RCDMLLoss(num_classes, dim).proxies.detach()
    torch.manual_seed(0)
    scaled = RCDMLLoss(num_classes, dim, proxy_init_norm=2.0).proxies.detach()
    torch.testing.assert_close(scaled.norm(dim=1), torch.full((num_classes,), 2.0))
    # Only the norms change: the directions are kaiming's.
    torch.testing.assert_close(scaled / 2.0, kaiming / kaiming.norm(dim=1, keepdim=True))


def test_low_precision_embeddings_are_computed_in_fp32():
    x, y = inputs(*LABELS["absent_and_singletons"])
    loss_fn = RCDMLLoss(9, x.shape[1])
    half = x.bfloat16()
    expected = loss_fn(half.float(), y)
    got = loss_fn(half, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = loss_fn(half.float(), y)
    assert got.dtype == autocast.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(autocast, expected, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"absent_proxies": "drop"}, "absent_proxies"),
    ({"pc_momentum": 1.5}, "pc_momentum"),
    ({"prc_weight": -0.1}, "prc_weight"),
    ({"negatives": "absent"}, "negatives"),
    ({"prc_proxies": "some"}, "prc_proxies"),
    ({"proxy_init_norm": -1.0}, "proxy_init_norm"),
])
def test_bad_hyper_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RCDMLLoss(5, 4, **kwargs)


def test_src_without_bincount_gives_identical_values_and_gradients():
    """The present-class count by ``index_add_`` (no host sync on CUDA) against ``bincount``."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(12, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    inv = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 1, 5, 3])
    loss = RCDMLLoss(6, 6)
    got = loss._src(x, inv, 6)
    (grad_got,) = torch.autograd.grad(got, x)

    same = inv[:, None] == inv[None, :]
    nearest = (x @ x.t()).masked_fill(~same, float("inf")).amin(1)
    per_class = nearest.new_full((6,), float("inf")).scatter_reduce(0, inv, nearest, "amin")
    expected = torch.where(torch.bincount(inv, minlength=6) >= 2, torch.exp(-per_class), 0.0).sum()
    (grad_expected,) = torch.autograd.grad(expected, x)
    assert torch.equal(got, expected) and torch.equal(grad_got, grad_expected)
