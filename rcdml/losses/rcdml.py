"""Relationship Constraint Deep Metric Learning loss (DESIGN.md section 1), vectorised.

Under ``absent_proxies='zero'`` a class absent from the batch has a zero corrected proxy: its
cosine to every sample is 0, it adds the constant ``log(1 + B e^{alpha delta})`` to the negative
Proxy-Anchor sum and nothing to PRC. Only the M classes present in the batch are computed, so the
cost is O(B M d), independent of the number of classes, while the value is the full formula's.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rcdml.distributed import all_gather_batch
from rcdml.losses.registry import register_loss

_EPS = 1e-12
# Finite stand-in for -inf in masked log-sum-exp, so that all-masked rows have zero gradient
# instead of NaN.
_MASKED = -1e4


def l2n(v: torch.Tensor) -> torch.Tensor:
    """``v / sqrt(|v|^2 + 1e-12)`` row-wise: the normalisation of DESIGN.md, zero rows stay zero."""
    return v * torch.rsqrt(v.pow(2).sum(-1, keepdim=True) + _EPS)


def _log1p_sum_exp(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum over masked rows of exp(logits))`` per column, computed stably."""
    masked = torch.where(mask, logits, torch.full_like(logits, _MASKED))
    return nn.functional.softplus(torch.logsumexp(masked, dim=0), beta=1.0, threshold=20.0)


class RCDMLLoss(nn.Module):
    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1,
                 alpha: float = 32.0, prc_weight: float = 0.02, src_weight: float = 0.01,
                 pc_momentum: float = 0.3, absent_proxies: str = "zero") -> None:
        super().__init__()
        if absent_proxies not in ("zero", "keep"):
            raise ValueError(f"absent_proxies must be 'zero' or 'keep', got {absent_proxies!r}")
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.margin = margin
        self.alpha = alpha
        self.prc_weight = prc_weight
        self.src_weight = src_weight
        self.pc_momentum = pc_momentum
        self.absent_proxies = absent_proxies
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")
        self.terms: dict[str, torch.Tensor] = {}

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"RCDMLLoss: expected a non-empty (batch, {self.embedding_size}) "
                             f"embedding batch, got shape {tuple(x.shape)}")
        if x.shape[1] != self.embedding_size:
            raise ValueError(f"RCDMLLoss: embeddings have size {x.shape[1]}, proxies have size "
                             f"{self.embedding_size}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"RCDMLLoss: expected {x.shape[0]} labels, got shape {tuple(y.shape)}")
        if bool(((y < 0) | (y >= self.num_classes)).any()):
            raise ValueError(f"RCDMLLoss: labels must lie in [0, {self.num_classes}), got "
                             f"min {int(y.min())} max {int(y.max())}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("RCDMLLoss: embeddings contain NaN or inf")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x, y = all_gather_batch(embeddings.float(), labels.long())
        self._check(x, y)
        batch = x.shape[0]
        present, inv = torch.unique(y, return_inverse=True)
        m = present.shape[0]
        onehot = nn.functional.one_hot(inv, m).bool()
        xn = l2n(x)
        proxies = self.proxies.float()

        corrected = proxies[present]
        if self.pc_momentum > 0:
            w = torch.exp((xn * l2n(corrected)[inv]).sum(-1))
            w_hat = w / torch.zeros(m, device=x.device, dtype=x.dtype).index_add(0, inv, w)[inv]
            pulled = torch.zeros_like(corrected).index_add(0, inv, w_hat[:, None] * x)
            corrected = self.pc_momentum * pulled + (1.0 - self.pc_momentum) * corrected

        if self.absent_proxies == "keep":
            all_corrected = proxies.index_copy(0, present, corrected)
            sim = xn @ l2n(all_corrected).t()
            pos_mask = nn.functional.one_hot(y, self.num_classes).bool()
            pos = _log1p_sum_exp(-self.alpha * (sim - self.margin), pos_mask)[present].sum() / m
            neg = _log1p_sum_exp(self.alpha * (sim + self.margin), ~pos_mask).sum() / self.num_classes
            prc_rows = all_corrected
        else:
            sim = xn @ l2n(corrected).t()
            pos = _log1p_sum_exp(-self.alpha * (sim - self.margin), onehot).sum() / m
            absent_term = math.log1p(batch * math.exp(self.alpha * self.margin))
            neg = (_log1p_sum_exp(self.alpha * (sim + self.margin), ~onehot).sum()
                   + (self.num_classes - m) * absent_term) / self.num_classes
            prc_rows = corrected

        loss = pos + neg
        zero = loss.new_zeros(())
        prc = src = zero
        if self.prc_weight > 0:
            pn = l2n(prc_rows)
            cos = pn @ pn.t()
            prc = torch.relu(cos).sum() - torch.relu(cos.diagonal()).sum()
            loss = loss + self.prc_weight * prc
        if self.src_weight > 0:
            counts = torch.bincount(inv, minlength=m)
            same = onehot.float() @ onehot.float().t() > 0
            same.fill_diagonal_(False)
            pair = torch.where(same, xn @ xn.t(), torch.full((batch, batch), 2.0, device=x.device))
            per_sample = pair.min(dim=1).values
            per_class = torch.full((m,), 2.0, device=x.device).scatter_reduce(
                0, inv, per_sample, reduce="amin", include_self=True)
            src = torch.exp(-per_class)[counts >= 2].sum()
            loss = loss + self.src_weight * src
        self.terms = {"pa_pos": pos.detach(), "pa_neg": neg.detach(), "prc": prc.detach(),
                      "src": src.detach()}
        return loss


@register_loss("rcdml")
def _build_rcdml(cfg, num_classes: int, embedding_size: int) -> RCDMLLoss:
    return RCDMLLoss(num_classes, embedding_size, margin=cfg.margin, alpha=cfg.alpha,
                     prc_weight=cfg.prc_weight, src_weight=cfg.src_weight,
                     pc_momentum=cfg.pc_momentum, absent_proxies=cfg.absent_proxies)
