"""Relationship Constraint Deep Metric Learning loss (docs/method.md, section 1), vectorised.

Classes are handled through their slot among the classes present in the (global) batch of B
samples, in min(B, C) slots whatever the number present (padding slots hold no sample and are
masked out), so that no shape depends on the data and a step needs no host sync to size its
tensors. Under ``absent_proxies='zero'`` an absent class has a zero corrected proxy: its cosine
to every sample is 0, so it adds the constant ``log(1 + B e^{alpha delta})`` to the negative
Proxy-Anchor sum and nothing to PRC. Only the slots are computed, so the cost is O(B^2 d)
whatever the number of classes C, and the value is the full formula's (the proxies' gradient is
still a dense C x d tensor, zero outside the present rows, as the optimizer expects). Under
``'keep'`` the formula involves every proxy: PA costs O(B C d) and PRC O(C^2 d), the latter in
row blocks so that memory stays O(block x C).

Three opt-in extensions (docs/method.md, "Extensions"), each off by default so ``loss.name: rcdml``
stays the reference formula: ``negatives='present'`` averages the negative Proxy-Anchor term
over the classes present instead of summing all C and dividing by C (with 32 of 964 classes per
batch, the reference weights the only non-constant negatives by 32/964); ``prc_proxies='present'``
restricts PRC to the present classes' corrected proxies (under ``'keep'`` the reference sums
C^2 pairs, 929k on Omniglot, which then dominates the loss); ``proxy_init_norm`` gives every
initial proxy that norm (kaiming's row norm sqrt(2 d / C) decides, through C, whether proxy
correction's sample mean or the proxy dominates the corrected proxy).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rcdml.config import LossConfig
from rcdml.functional import l2_normalize
from rcdml.losses.global_batch import GlobalBatchLoss, present_classes
from rcdml.losses.registry import register_loss

# Rows per block of the pairwise proxy cosines in PRC: 2^24 entries (64 MiB in fp32) per block.
_PRC_BLOCK_ENTRIES = 1 << 24


def _log1p_sum_exp(z: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum_i exp(z_i))`` over dim 0, stable; ``-inf`` entries are left out and get a
    zero gradient (also when a whole column is ``-inf``). Shifting by ``max(0, max z)`` and using
    log1p keeps full relative precision when the sum is tiny (well-separated classes)."""
    top = z.detach().amax(0).clamp_min(0.0)
    return top + torch.log1p(torch.expm1(-top) + torch.exp(z - top).sum(0))


def _segment_log1p_sum_exp(z: torch.Tensor, segment: torch.Tensor, count: int) -> torch.Tensor:
    """``log(1 + sum_{i in s} exp(z_i))`` for each segment s in ``0..count-1``, stable."""
    top = z.new_zeros(count).scatter_reduce(0, segment, z.detach(), "amax", include_self=True)
    total = torch.expm1(-top).index_add(0, segment, torch.exp(z - top[segment]))
    return top + torch.log1p(total)


def _log1p_exp(t: float) -> float:
    """``log(1 + e^t)`` in Python floats without overflow."""
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


class _OffDiagonalReluSum(torch.autograd.Function):
    """``sum_{a != b} max(0, n_a . n_b)`` over the rows of ``n``, computed in row blocks and
    recomputed in backward, so memory is O(block x rows) rather than O(rows^2)."""

    @staticmethod
    def _blocks(n: torch.Tensor):
        rows = max(1, _PRC_BLOCK_ENTRIES // max(n.shape[0], 1))
        for start in range(0, n.shape[0], rows):
            block = n[start:start + rows] @ n.t()
            block.diagonal(offset=start).zero_()
            yield start, block

    @staticmethod
    def forward(ctx, n: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(n)
        total = n.new_zeros(())
        for _, block in _OffDiagonalReluSum._blocks(n):
            total += block.clamp_min_(0.0).sum()
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (n,) = ctx.saved_tensors
        out = torch.empty_like(n)
        for start, block in _OffDiagonalReluSum._blocks(n):
            # The cosine matrix is symmetric: each pair (a, b) reaches n_a from both (a, b) and (b, a).
            out[start:start + block.shape[0]] = (block > 0).to(n.dtype) @ n
        return out * (2.0 * grad)


class RCDMLLoss(GlobalBatchLoss):
    """``L = L_PA + prc_weight L_PRC + src_weight L_SRC`` on proxy-corrected proxies.

    ``forward(embeddings, labels)`` computes the loss of the global batch (all ranks' embeddings,
    gathered with gradient, see :class:`GlobalBatchLoss`) and returns the same scalar on every
    rank. ``terms`` holds the last
    step's unweighted terms (detached) for logging: ``pa_pos``, ``pa_neg`` and, when their weight
    is non-zero, ``prc`` and ``src``. A zero weight removes a term and ``pc_momentum=0`` removes
    proxy correction, so the paper's ablations are configs.
    """

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1,
                 alpha: float = 32.0, prc_weight: float = 0.02, src_weight: float = 0.01,
                 pc_momentum: float = 0.3, absent_proxies: str = "zero", negatives: str = "all",
                 prc_proxies: str = "all", proxy_init_norm: float = 0.0) -> None:
        for name, value, allowed in (("absent_proxies", absent_proxies, ("zero", "keep")),
                                     ("negatives", negatives, ("all", "present")),
                                     ("prc_proxies", prc_proxies, ("all", "present"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if proxy_init_norm < 0:
            raise ValueError(f"proxy_init_norm must be >= 0 (0: kaiming), got {proxy_init_norm}")
        if not 0.0 <= pc_momentum <= 1.0:
            raise ValueError(f"pc_momentum must lie in [0, 1], got {pc_momentum}")
        if prc_weight < 0 or src_weight < 0:
            raise ValueError(f"prc_weight and src_weight must be >= 0, got {prc_weight}, {src_weight}")
        if num_classes < 1 or embedding_size < 1:
            raise ValueError(f"num_classes and embedding_size must be >= 1, got {num_classes}, "
                             f"{embedding_size}")
        super().__init__(num_classes, embedding_size)
        self.margin = margin
        self.alpha = alpha
        self.prc_weight = prc_weight
        self.src_weight = src_weight
        self.pc_momentum = pc_momentum
        self.absent_proxies = absent_proxies
        self.negatives = negatives
        self.prc_proxies = prc_proxies
        self.proxy_init_norm = proxy_init_norm
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")
        if proxy_init_norm > 0:
            with torch.no_grad():
                self.proxies.mul_(proxy_init_norm / self.proxies.norm(dim=1, keepdim=True))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
                f"margin={self.margin}, alpha={self.alpha}, prc_weight={self.prc_weight}, "
                f"src_weight={self.src_weight}, pc_momentum={self.pc_momentum}, "
                f"absent_proxies={self.absent_proxies!r}, negatives={self.negatives!r}, "
                f"prc_proxies={self.prc_proxies!r}, proxy_init_norm={self.proxy_init_norm}")

    def _correct(self, x: torch.Tensor, xn: torch.Tensor, inv: torch.Tensor,
                 p: torch.Tensor) -> torch.Tensor:
        """Proxy correction of the proxies ``p`` of the slots (slots x d)."""
        if self.pc_momentum == 0:
            return p
        w = torch.exp((xn * l2_normalize(p)[inv]).sum(-1))
        w_hat = w / w.new_zeros(p.shape[0]).index_add(0, inv, w)[inv]
        pulled = torch.zeros_like(p).index_add(0, inv, w_hat[:, None] * x)
        return self.pc_momentum * pulled + (1.0 - self.pc_momentum) * p

    def _proxy_anchor(self, xn: torch.Tensor, rows: torch.Tensor, column: torch.Tensor,
                      inv: torch.Tensor, slots: int, row_present: torch.Tensor,
                      count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PA positive and negative terms; ``column[i]`` is sample i's own proxy among ``rows``,
        ``inv[i]`` its slot among ``slots``, ``row_present`` says which rows are classes present
        and ``count`` is their number."""
        sim = xn @ l2_normalize(rows).t()
        own = sim.gather(1, column[:, None]).squeeze(1)
        pos = _segment_log1p_sum_exp(-self.alpha * (own - self.margin), inv, slots)
        logits = self.alpha * (sim + self.margin)
        if self.absent_proxies == "zero":  # rows are slots, and a padding slot is no class
            logits = logits.masked_fill(~row_present, float("-inf"))
        neg = _log1p_sum_exp(logits.scatter(1, column[:, None], float("-inf")))
        if self.negatives == "present":
            return pos.sum() / count, torch.where(row_present, neg, 0.0).sum() / count
        neg = neg.sum()
        if self.absent_proxies == "zero":
            batch = xn.shape[0]
            neg = neg + (self.num_classes - count) * _log1p_exp(math.log(batch)
                                                                + self.alpha * self.margin)
        return pos.sum() / count, neg / self.num_classes

    @staticmethod
    def _src(xn: torch.Tensor, inv: torch.Tensor, slots: int) -> torch.Tensor:
        """Sum over classes with >= 2 samples of exp(-min same-class cosine)."""
        same = inv[:, None] == inv[None, :]
        nearest = (xn @ xn.t()).masked_fill(~same, float("inf")).amin(1)
        per_class = nearest.new_full((slots,), float("inf")).scatter_reduce(
            0, inv, nearest, "amin", include_self=True)
        # A count by index_add_ stays on the device; bincount synchronises twice on CUDA.
        several = torch.zeros_like(per_class).index_add_(0, inv, torch.ones_like(nearest)) >= 2
        return torch.where(several, torch.exp(-per_class), 0.0).sum()

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # As many slots for the classes present as there can be, so that no shape depends on
        # the data (a data-dependent shape costs a host sync on a GPU); the padding slots hold
        # no sample and are masked out of every term.
        slots = min(x.shape[0], self.num_classes)
        present, inv, valid, count = present_classes(y, slots)
        count = count.to(x.dtype)
        xn = l2_normalize(x)
        proxies = self.proxies.to(x.dtype)
        # rows: the corrected proxies the loss sees; column[i]: sample i's own row;
        # row_present: which rows are classes present.
        if self.absent_proxies == "zero":
            rows, column, row_present = self._correct(x, xn, inv, proxies[present]), inv, valid
        else:
            rows, column = proxies, y
            row_present = torch.zeros(self.num_classes, dtype=torch.bool,
                                      device=y.device).index_fill_(0, y, True)
            if self.pc_momentum > 0:
                corrected = self._correct(x, xn, inv, proxies[present])
                slot_of = torch.zeros_like(row_present, dtype=torch.long).scatter_(0, y, inv)
                rows = torch.where(row_present[:, None], corrected[slot_of], proxies)
        pos, neg = self._proxy_anchor(xn, rows, column, inv, slots, row_present, count)
        loss = pos + neg
        terms = {"pa_pos": pos, "pa_neg": neg}
        if self.prc_weight > 0:
            if self.absent_proxies == "keep" and self.prc_proxies == "all":
                related = rows
            else:  # the present classes' rows by slot, the padding slots zero (no pair counts)
                by_slot = rows if self.absent_proxies == "zero" else rows[present]
                related = torch.where(valid[:, None], by_slot, 0.0)
            terms["prc"] = _OffDiagonalReluSum.apply(l2_normalize(related))
            loss = loss + self.prc_weight * terms["prc"]
        if self.src_weight > 0:
            terms["src"] = self._src(xn, inv, slots)
            loss = loss + self.src_weight * terms["src"]
        self.terms = {name: value.detach() for name, value in terms.items()}
        return loss


@register_loss("rcdml")
def _build_rcdml(cfg: LossConfig, num_classes: int, embedding_size: int) -> RCDMLLoss:
    return RCDMLLoss(num_classes, embedding_size, margin=cfg.margin, alpha=cfg.alpha,
                     prc_weight=cfg.prc_weight, src_weight=cfg.src_weight,
                     pc_momentum=cfg.pc_momentum, absent_proxies=cfg.absent_proxies,
                     negatives=cfg.negatives, prc_proxies=cfg.prc_proxies,
                     proxy_init_norm=cfg.proxy_init_norm)
