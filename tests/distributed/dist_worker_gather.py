"""Worker for tests/distributed/test_gather.py: rank r holds SIZES[r] rows (one rank none);
checks the gathers' values and the summing backward against closed forms, prints 'ok'."""
from __future__ import annotations

import os

import torch

from rcdml.distributed import (all_gather_batch, all_gather_no_grad, all_gather_with_grad,
                               equal_shards, init_distributed, shutdown)

SIZES = [2, 0, 3, 1]


def rows(rank: int) -> torch.Tensor:
    """Rank ``rank``'s rows: their global row index in column 0, the rank in column 1."""
    start = sum(SIZES[:rank])
    index = torch.arange(start, start + SIZES[rank], dtype=torch.float64)
    return torch.stack([index, torch.full_like(index, rank)], dim=1)


def main() -> None:
    info = init_distributed("gloo")
    world, rank = info.world_size, info.rank
    sizes = SIZES[:world]
    total = sum(sizes)
    expected = torch.cat([rows(r) for r in range(world)])

    x = rows(rank).requires_grad_()
    gathered = all_gather_with_grad(x)
    assert torch.equal(gathered, expected), gathered
    # The same loss on every rank; its gradient w.r.t. global row i is weights[i].
    weights = torch.arange(total * 2, dtype=torch.float64).reshape(total, 2) + 1
    (gathered * weights).sum().backward()
    start = sum(sizes[:rank])
    assert torch.equal(x.grad, world * weights[start:start + sizes[rank]]), x.grad

    emb, labels = all_gather_batch(rows(rank).float().requires_grad_(),
                                   torch.full((sizes[rank],), 10 + rank))
    assert torch.equal(emb, expected.float()) and emb.requires_grad
    assert labels.tolist() == [10 + r for r in range(world) for _ in range(sizes[r])], labels

    plain = all_gather_no_grad(rows(rank).requires_grad_())
    assert torch.equal(plain, expected) and not plain.requires_grad

    # Equal shards announced: no size exchange, the same values and summing backward.
    same = torch.full((2, 2), float(rank), dtype=torch.float64, requires_grad=True)
    with equal_shards(2):
        both = all_gather_with_grad(same)
        emb, labels = all_gather_batch(same.float(), torch.full((2,), rank))
    assert torch.equal(both, torch.arange(world, dtype=torch.float64).repeat_interleave(2)[:, None]
                       .expand(2 * world, 2)), both
    assert torch.equal(labels, torch.arange(world).repeat_interleave(2)), labels
    (both * weights.new_ones(2 * world, 2).cumsum(0)).sum().backward()
    assert torch.equal(same.grad, world * torch.arange(2 * rank + 1, 2 * rank + 3, dtype=torch.float64)
                       [:, None].expand(2, 2)), same.grad
    try:
        with equal_shards(3):
            all_gather_with_grad(same)
    except ValueError as e:
        assert "equal_shards" in str(e)
    else:
        raise AssertionError("a rank holding other rows than announced must raise")

    # No rows anywhere: an empty global batch (which the losses then reject), no collective.
    assert all_gather_with_grad(torch.zeros(0, 2)).shape == (0, 2)
    shutdown()
    # One write(2) per line: the ranks share the pipe, and print() may split "ok", " ", rank and
    # the newline into separate writes that interleave with the other ranks' lines.
    os.write(1, f"ok {rank}\n".encode())


if __name__ == "__main__":
    main()
