"""All-gather with gradient, for losses that must see the global batch.

Every rank computes the same loss on the gathered batch. The backward pass sums the gradient
that each rank's copy of the loss sends to a rank's slice, so a rank receives ``world_size`` times
the gradient of the (identical) loss; DDP and DeepSpeed then average over ranks, which gives
exactly the gradient of one process training on the concatenated batch. Parameters used by the
loss outside the gather (proxies) get the plain gradient of the loss on every rank, which the
averaging leaves unchanged.

Ranks may hold different numbers of rows (uneven last batches, uneven splits); the gathered
tensor is always the concatenation in rank order, identical on every rank. Where the caller
knows that every rank holds the same rows (the samplers' training batches), :func:`equal_shards`
says so and the gathers skip the exchange of row counts, a collective and a host sync per call.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.distributed as dist

from rcdml.distributed.env import get_rank, get_world_size, is_distributed

_ROWS_PER_RANK: contextvars.ContextVar[int | None] = contextvars.ContextVar("rows_per_rank",
                                                                           default=None)


@contextlib.contextmanager
def equal_shards(rows: int | None):
    """Inside this block every rank gathers exactly ``rows`` rows (a rank holding another count
    raises before the collective); ``None``: the counts are exchanged, as outside the block."""
    token = _ROWS_PER_RANK.set(rows)
    try:
        yield
    finally:
        _ROWS_PER_RANK.reset(token)


def _sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's row count, in rank order (one collective and one host sync, unless
    :func:`equal_shards` gives them)."""
    rows = _ROWS_PER_RANK.get()
    if rows is not None:
        if n != rows:
            raise ValueError(f"this rank holds {n} rows where every rank must hold {rows} "
                             "(equal_shards)")
        return [rows] * get_world_size()
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.empty_like(local) for _ in range(get_world_size())]
    dist.all_gather(sizes, local)
    return torch.cat(sizes).tolist()


def _gather_padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every rank's ``x`` (first dims given by ``sizes``) in rank order."""
    x = x.contiguous()
    biggest = max(sizes)
    if biggest == 0:
        return x
    if x.shape[0] < biggest:
        # all_gather needs equal shapes: pad to the largest rank's rows, cut after the gather.
        padded = x.new_zeros((biggest,) + tuple(x.shape[1:]))
        padded[: x.shape[0]] = x
        x = padded
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """torch's own (``torch.distributed.nn.functional.all_gather``) would reduce-scatter the
    gradient on NCCL, but it takes equal shapes only and torch 2.14 deprecates it in favour of a
    private module; this one all-reduces the gradient and takes any row counts."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes = sizes
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        rank = get_rank()
        start = sum(ctx.sizes[:rank])
        return grad[start: start + ctx.sizes[rank]], None


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The rank-ordered concatenation of ``x`` over all ranks (uneven first dims allowed); its
    backward sums the gradients of all ranks into each rank's slice."""
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x, _sizes(x.shape[0], x.device))


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """The rank-ordered concatenation of ``x`` over all ranks, without autograd."""
    if not is_distributed():
        return x
    return _gather_padded(x.detach(), _sizes(x.shape[0], x.device))


def all_gather_batch(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Global batch of (embeddings with gradient, labels), in rank order; one size exchange."""
    if not is_distributed():
        return embeddings, labels
    sizes = _sizes(embeddings.shape[0], embeddings.device)
    gathered = _AllGatherWithGrad.apply(embeddings, sizes)
    return gathered, _gather_padded(labels.to(embeddings.device), sizes)
