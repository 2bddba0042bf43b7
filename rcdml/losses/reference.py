"""RCDML computed the way the reference implementation does it: a dense (B, C) cosine matrix, one-hot masks and
Python loops over all C classes (with a host sync per class).

Slow by design and kept out of the registry: it is the independent oracle that the tests
compare :class:`rcdml.losses.RCDMLLoss` with, and the per-class-loop baseline of
``benchmarks/loss.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _l2_norm(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt(torch.sum(v * v, dim=1, keepdim=True) + 1e-12)


def rcdml_loss_loop(X: torch.Tensor, T: torch.Tensor, P: torch.Tensor, margin: float = 0.1,
                    alpha: float = 32.0, prc_weight: float = 0.02, src_weight: float = 0.01,
                    pc_momentum: float = 0.3,
                    absent_proxies: str = "zero", negatives: str = "all",
                    prc_proxies: str = "all") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """docs/method.md section 1 for embeddings ``X`` (B x d), labels ``T`` and proxies ``P`` (C x d).

    Returns the loss and its unweighted terms ``pa_pos``, ``pa_neg``, ``prc``, ``src``.
    ``negatives`` and ``prc_proxies`` are the opt-in extensions of docs/method.md ("Extensions")
    (``'all'``: the reference formula).
    """
    C = P.shape[0]
    one_hot = F.one_hot(T, C).to(X.dtype)
    per_class = one_hot.sum(dim=0)
    cos = _l2_norm(X) @ _l2_norm(P).t()

    # Proxy correction: weights exp(cos to own proxy), normalised within each class.
    w = torch.exp((cos * one_hot).sum(dim=1))
    for c in range(C):
        if per_class[c] == 0:
            continue
        w = torch.where(T == c, w / w[T == c].sum(), w)
    P_new = torch.zeros_like(P) if absent_proxies == "zero" else P.clone()
    for c in range(C):
        if per_class[c] == 0:
            continue
        P_new[c] = pc_momentum * (X[T == c] * w[T == c, None]).sum(dim=0) + (1 - pc_momentum) * P[c]

    # Proxy-Anchor on the corrected proxies.
    cos = _l2_norm(X) @ _l2_norm(P_new).t()
    pos_sum = (torch.exp(-alpha * (cos - margin)) * one_hot).sum(dim=0)
    neg_sum = (torch.exp(alpha * (cos + margin)) * (1 - one_hot)).sum(dim=0)
    pa_pos = torch.log(1 + pos_sum).sum() / (per_class > 0).sum()
    if negatives == "present":
        pa_neg = (torch.log(1 + neg_sum) * (per_class > 0)).sum() / (per_class > 0).sum()
    else:
        pa_neg = torch.log(1 + neg_sum).sum() / C

    # Proxy relationship constraint over ordered pairs of distinct corrected proxies.
    cos_p = _l2_norm(P_new) @ _l2_norm(P_new).t()
    cos_p = cos_p - torch.diag_embed(torch.diag(cos_p))
    if prc_proxies == "present":
        both = (per_class > 0)[:, None] & (per_class > 0)[None, :]
        cos_p = torch.where(both, cos_p, torch.zeros_like(cos_p))
    prc = torch.where(cos_p >= 0, cos_p, torch.zeros_like(cos_p)).sum()

    # Sample relationship constraint: the least similar same-class pair of each class.
    src = X.new_zeros(())
    for c in range(C):
        xc = _l2_norm(X[T == c])
        if xc.shape[0] < 2:
            continue
        src = src + torch.exp(-(xc @ xc.t()).min())

    loss = pa_pos + pa_neg + prc_weight * prc + src_weight * src
    return loss, {"pa_pos": pa_pos, "pa_neg": pa_neg, "prc": prc, "src": src}
