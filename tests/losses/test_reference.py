"""The per-class-loop oracle itself, against hand-written scalar arithmetic of DESIGN.md section 1
and against pytorch-metric-learning's Proxy-Anchor."""
from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from rcdml.losses.reference import rcdml_loss_loop


def norm(v):
    s = math.sqrt(sum(a * a for a in v) + 1e-12)
    return [a / s for a in v]


def cos(a, b):
    return sum(p * q for p, q in zip(norm(a), norm(b)))


def by_hand(X, T, P, margin, alpha, beta, absent):
    """DESIGN.md section 1 with Python lists and scalars."""
    C, present = len(P), sorted(set(T))
    w = [math.exp(cos(x, P[t])) for x, t in zip(X, T)]
    corrected = [list(p) if absent == "keep" else [0.0] * len(p) for p in P]
    for c in present:
        members = [i for i, t in enumerate(T) if t == c]
        total = sum(w[i] for i in members)
        pulled = [sum(w[i] / total * X[i][k] for i in members) for k in range(len(P[c]))]
        corrected[c] = [beta * a + (1 - beta) * b for a, b in zip(pulled, P[c])]
    s = [[cos(x, q) for q in corrected] for x in X]
    pos = sum(math.log(1 + sum(math.exp(-alpha * (s[i][c] - margin)) for i, t in enumerate(T) if t == c))
              for c in present) / len(present)
    neg = sum(math.log(1 + sum(math.exp(alpha * (s[i][c] + margin)) for i, t in enumerate(T) if t != c))
              for c in range(C)) / C
    prc = sum(max(0.0, cos(corrected[a], corrected[b])) for a in range(C) for b in range(C) if a != b)
    src = 0.0
    for c in present:
        members = [i for i, t in enumerate(T) if t == c]
        if len(members) >= 2:
            src += math.exp(-min(cos(X[i], X[j]) for i in members for j in members))
    return {"pa_pos": pos, "pa_neg": neg, "prc": prc, "src": src}


@pytest.mark.parametrize("absent", ["zero", "keep"])
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_loop_matches_scalar_arithmetic(absent, beta):
    gen = torch.Generator().manual_seed(7)
    X = torch.randn(7, 3, generator=gen, dtype=torch.float64) * 2
    P = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    T = [0, 0, 0, 2, 2, 3, 0]  # classes 1 and 4 absent, class 3 a single sample
    loss, terms = rcdml_loss_loop(X, torch.tensor(T), P, margin=0.1, alpha=4.0, prc_weight=0.05,
                                  src_weight=0.01, pc_momentum=beta, absent_proxies=absent)
    expected = by_hand(X.tolist(), T, P.tolist(), 0.1, 4.0, beta, absent)
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-12), name
    total = expected["pa_pos"] + expected["pa_neg"] + 0.05 * expected["prc"] + 0.01 * expected["src"]
    assert float(loss) == pytest.approx(total, rel=1e-12)


def test_loop_without_correction_and_constraints_is_proxy_anchor():
    gen = torch.Generator().manual_seed(8)
    X = torch.randn(10, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    T = torch.tensor([0, 0, 1, 1, 1, 3, 3, 5, 0, 1])
    pml = pml_losses.ProxyAnchorLoss(6, 6, margin=0.1, alpha=32).double()
    P = pml.proxies.detach().clone().requires_grad_()
    loss, _ = rcdml_loss_loop(X, T, P, prc_weight=0.0, src_weight=0.0, pc_momentum=0.0,
                              absent_proxies="keep")
    expected = pml(X, T)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)
    gx, gp = torch.autograd.grad(loss, [X, P])
    ex, ep = torch.autograd.grad(expected, [X, pml.proxies])
    torch.testing.assert_close(gx, ex, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(gp, ep, rtol=1e-8, atol=1e-12)
