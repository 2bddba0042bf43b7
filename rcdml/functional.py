"""Tensor functions shared by the model, the losses, the metrics and the monitor."""
from __future__ import annotations

import torch

_EPS = 1e-12


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """``x / sqrt(|x|^2 + 1e-12)`` row-wise (``n(v)`` of docs/method.md): zero rows stay zero.
    The norm is computed in at least fp32 (a bf16 sum of squares loses the unit length) and the
    result keeps ``x``'s dtype."""
    squares = x.to(torch.promote_types(x.dtype, torch.float32)).pow(2).sum(-1, keepdim=True)
    return x * torch.rsqrt(squares + _EPS).to(x.dtype)
