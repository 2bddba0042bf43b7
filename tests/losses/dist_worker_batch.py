"""Worker for tests/losses/test_global_batch.py: three AdamW steps of a tiny embedding network and each
loss, through MetricLearner and DDPBackend exactly as the trainer runs them, on uneven per-rank
slices of fixed global batches.

Under torchrun each rank trains on its slice; imported and called with world_size=1 it trains
one process on the whole global batches. Records per step: the loss, every parameter's gradient
(after DDP's averaging) and every parameter after the optimizer step.
"""
from __future__ import annotations

import os
import sys

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper
from torch import nn

from rcdml.config.schema import LossConfig, OptimConfig
from rcdml.distributed import barrier, init_distributed, shutdown
from rcdml.engine.backends import DDPBackend
from rcdml.engine.learner import MetricLearner
from rcdml.engine.optim import build_optimizer, param_groups
from rcdml.losses import build_loss

NUM_CLASSES, IN_DIM, DIM = 7, 10, 8
# Global batches of 18: classes split across ranks, classes only on one rank, one-sample classes,
# a rank holding a single class; classes absent from a step.
LABELS = [
    [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 0, 5, 5, 1, 5, 0, 3],
    [2, 2, 2, 2, 2, 2, 6, 6, 1, 1, 1, 0, 0, 0, 0, 6, 6, 2],
    [3, 4, 5, 6, 3, 4, 5, 6, 3, 4, 5, 6, 1, 1, 1, 3, 4, 1],
]
# Uneven per-rank batch sizes for our losses; PML's wrapper needs even ones.
SPLITS = {1: [18], 2: [11, 7], 3: [8, 3, 7]}
EVEN_SPLITS = {1: [18], 2: [9, 9], 3: [6, 6, 6]}
VARIANTS = {
    "rcdml": {"name": "rcdml"},
    "rcdml_keep": {"name": "rcdml", "absent_proxies": "keep"},
    "proxy_anchor": {"name": "proxy_anchor"},
    "proxy_nca": {"name": "proxy_nca"},
    "multi_similarity": {"name": "multi_similarity"},
    "triplet": {"name": "triplet", "triplet_margin": 0.5},
    "contrastive": {"name": "contrastive"},
}
# PML's own DistributedLossWrapper around ProxyAnchorLoss, to show what the test detects.
PML_WRAPPER = "pml_wrapper"


class TinyNet(nn.Module):
    """The EmbeddingNet interface the optimizer groups expect, on vectors instead of images."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(IN_DIM, 16), nn.Tanh())
        self.head = nn.Linear(16, DIM)
        self.timm = False

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head(self.backbone(x)), dim=1)


class WrappedProxyAnchor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = DistributedLossWrapper(pml_losses.ProxyAnchorLoss(NUM_CLASSES, DIM))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(x, y)


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(123)
    return [(torch.randn(len(labels), IN_DIM, generator=gen), torch.tensor(labels))
            for labels in LABELS]


def train(variant: str, world_size: int, rank: int) -> dict:
    torch.manual_seed(0)
    model = TinyNet()
    if variant == PML_WRAPPER:
        loss = WrappedProxyAnchor()
    else:
        loss = build_loss(LossConfig(**VARIANTS[variant]), NUM_CLASSES, DIM)
    learner = MetricLearner(model, loss)
    optim_cfg = OptimConfig(lr=1e-2, loss_lr_mult=10.0)
    backend = DDPBackend(learner, build_optimizer(param_groups(model, loss, optim_cfg), optim_cfg),
                         torch.device("cpu"), grad_clip_value=None)
    backend.prepare()
    sizes = (EVEN_SPLITS if variant == PML_WRAPPER else SPLITS)[world_size]
    start, stop = sum(sizes[:rank]), sum(sizes[:rank + 1])
    record: dict = {"loss": [], "grads": [], "params": []}
    for inputs, labels in global_batches():
        value = backend(inputs[start:stop], labels[start:stop])
        backend.backward(value)
        record["loss"].append(value.detach().clone())
        record["grads"].append({n: p.grad.clone() for n, p in learner.named_parameters()})
        backend.step()
        record["params"].append({n: p.detach().clone() for n, p in learner.named_parameters()})
    return record


def main(out_dir: str) -> None:
    info = init_distributed("gloo")
    torch.set_num_threads(1)
    for variant in [*VARIANTS, PML_WRAPPER]:
        record = train(variant, info.world_size, info.rank)
        os.makedirs(os.path.join(out_dir, variant), exist_ok=True)
        torch.save(record, os.path.join(out_dir, variant, f"rank{info.rank}.pt"))
    # Without it a rank that finished first could tear its gloo connections down while a peer
    # still receives its last messages; the peer's gloo thread then throws and the process
    # aborts ("terminate called without an active exception").
    barrier()
    shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
