"""Global pooling of a backbone's output into one vector per image: feature maps (N, C, H, W)
pool over space, token sequences (N, T, D) over their patch tokens or take the class token."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rcdml.config import ConfigError

@dataclass(frozen=True)
class Layout:
    """What a backbone's output is: a feature map, or tokens with ``prefix`` leading non-patch
    tokens, the first of them a class token when ``cls``."""
    tokens: bool
    prefix: int = 0
    cls: bool = False


MAP_POOLINGS = ("avg", "max", "avg+max", "gem")
TOKEN_POOLINGS = ("cls", "avg", "avg+cls", "gem")


def allowed_poolings(layout: Layout) -> tuple[str, ...]:
    if not layout.tokens:
        return MAP_POOLINGS
    return TOKEN_POOLINGS if layout.cls else tuple(p for p in TOKEN_POOLINGS if "cls" not in p)


def check_pooling(pooling: str, layout: Layout, backbone: str) -> None:
    """Max pooling of tokens is left out: transformer tokens are signed, centred features (after a
    LayerNorm), whose per-channel maximum over tokens no ViT recipe uses."""
    allowed = allowed_poolings(layout)
    if pooling not in allowed:
        kind = ("tokens" + ("" if layout.cls else " without a class token")) if layout.tokens \
            else "feature maps"
        raise ConfigError(f"model.pooling: {pooling} does not apply to {backbone}, whose output is "
                          f"{kind}; allowed: {', '.join(allowed)}")


class GlobalPool(nn.Module):
    """``kind`` of :data:`MAP_POOLINGS` or :data:`TOKEN_POOLINGS`; ``prefix`` leading tokens
    (class, register, distillation) are not patch tokens. Sums (avg+max, avg+cls) keep the
    width, as Proxy-Anchor's avg+max does.

    gem: generalised mean (Radenović et al., 2018), ``mean(clamp(x, eps)^p)^(1/p)`` with a
    learnable ``p`` (initially 3); negative features (of a transformer's LayerNorm output)
    count as ``eps``."""

    def __init__(self, kind: str, prefix: int = 0, gem_eps: float = 1e-6) -> None:
        super().__init__()
        self.kind = kind
        self.prefix = prefix
        self.gem_eps = gem_eps
        if kind == "gem":
            self.p = nn.Parameter(torch.tensor(3.0))

    def _gem(self, x: torch.Tensor, dim) -> torch.Tensor:
        return x.clamp(min=self.gem_eps).pow(self.p).mean(dim=dim).pow(1.0 / self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            patches = x[:, self.prefix:]
            if self.kind == "cls":
                return x[:, 0]
            if self.kind == "avg":
                return patches.mean(dim=1)
            if self.kind == "avg+cls":
                return patches.mean(dim=1) + x[:, 0]
            return self._gem(patches, 1)
        if self.kind == "avg":
            return x.mean(dim=(2, 3))
        if self.kind == "max":
            return x.amax(dim=(2, 3))
        if self.kind == "avg+max":
            return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))
        return self._gem(x, (2, 3))
