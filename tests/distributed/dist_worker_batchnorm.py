"""Worker for tests/distributed/test_batchnorm.py: a conv + BatchNorm2d + BatchNorm1d network
with GlobalBatchNorm on uneven per-rank slices of one global batch, two training forwards and
backwards. Each rank saves its output slice, its input gradient, its parameter gradients
(summed over ranks, the DDP sum before the average) and the running statistics; with
world_size=1 it runs the plain layers on the whole batch."""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch import nn

from rcdml.distributed import init_distributed, shutdown
from rcdml.distributed.batchnorm import to_global_batchnorm

SPLITS = {1: [10], 2: [7, 3]}


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 6), nn.BatchNorm1d(6, momentum=None))


def run(rank: int, world: int) -> dict[str, torch.Tensor]:
    net = network()
    if world > 1:
        assert to_global_batchnorm(net) == 2
    net.train()
    generator = torch.Generator().manual_seed(1)
    start = sum(SPLITS[world][:rank])
    rows = slice(start, start + SPLITS[world][rank])
    record = {}
    for step in range(2):
        x = (torch.randn(10, 3, 6, 6, generator=generator) * 3 + 1)[rows].requires_grad_(True)
        weights = torch.randn(10, 6, generator=generator)[rows]
        out = net(x)
        (out * weights).sum().backward()
        record[f"out{step}"] = out.detach()
        record[f"xgrad{step}"] = x.grad
    for name, p in net.named_parameters():
        grad = p.grad.clone()
        if world > 1:
            dist.all_reduce(grad)
        record[f"grad.{name}"] = grad
    for name, b in net.named_buffers():
        record[f"buffer.{name}"] = b.clone()
    return record


if __name__ == "__main__":
    info = init_distributed("gloo", 60)
    torch.save(run(info.rank, info.world_size), f"{sys.argv[1]}.{info.rank}.pt")
    shutdown()
