"""Embed an evaluation set across ranks: each rank embeds its shard once, then all ranks get
the full set in dataset order."""
from __future__ import annotations

import contextlib
import itertools

import torch
from torch import nn

from rcdml.distributed import all_gather_no_grad, all_gather_object

_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str, device: torch.device | None = None) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` or ``eval.amp``; with ``device``, None off the GPU
    (inference on CPU gains nothing from bf16 and loses precision)."""
    if device is not None and device.type != "cuda":
        return None
    return _AMP_DTYPES[amp]


@contextlib.contextmanager
def full_precision():
    """fp32 products without TF32 inside the block (cuDNN convolutions use TF32 by default,
    which rounds inputs to 10 mantissa bits); the previous flags come back after it."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _padding_forwards(batches, count: int) -> tuple[object, list[torch.Tensor]]:
    """``batches`` (still all of them) and the inputs of the extra forwards that bring this
    rank's ``count`` up to the largest rank's. Collective: the counts and image shapes are
    exchanged before any forward, so no rank is then inside another collective."""
    batches = iter(batches)
    first = next(batches, None)
    shape = None if first is None else (tuple(first[0].shape[1:]), first[0].dtype)
    peers = all_gather_object((count, shape))
    most = max(n for n, _ in peers)
    shape, dtype = next(s for _, s in peers if s is not None) if most else ((), None)
    rest = [] if first is None else [first]
    padding = [torch.zeros((1, *shape), dtype=dtype) for _ in range(most - count)]
    return itertools.chain(rest, batches), padding


@torch.no_grad()
def embed_shard(model: nn.Module, loader, device: torch.device,
                amp_dtype: torch.dtype | None = None,
                equal_forwards: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float32 embeddings, labels, dataset indices) of the ``(images, labels, indices)``
    batches of ``loader``, on ``device``. An empty loader gives (0, 0) embeddings.

    ``equal_forwards`` (a model whose forward is a collective, ZeRO-3): every rank runs as many
    forwards as the rank with the most batches, the extra ones on a discarded zero image."""
    was_training = model.training
    model.eval()
    outs, labels, indices = [], [], []
    low = amp_dtype is not None
    autocast = torch.autocast(device.type, dtype=amp_dtype) if low else contextlib.nullcontext()
    batches, padding = _padding_forwards(loader, len(loader)) if equal_forwards else (loader, [])
    try:
        with contextlib.nullcontext() if low else full_precision():
            for images, y, idx in batches:
                with autocast:
                    outs.append(model(images.to(device, non_blocking=True)).float())
                labels.append(torch.as_tensor(y).to(device))
                indices.append(torch.as_tensor(idx).to(device))
            for images in padding:
                with autocast:
                    model(images.to(device))
    finally:
        model.train(was_training)
    if not outs:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return torch.empty(0, 0, device=device), empty, empty
    return torch.cat(outs), torch.cat(labels).long(), torch.cat(indices).long()


def gather_in_order(embeddings: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                    total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's shard, concatenated and put in dataset order.

    Raises if any image was embedded twice or not at all, which would silently bias R@K.
    """
    # A rank whose shard is empty (fewer images than ranks) does not know the embedding size.
    dim = max(all_gather_object(embeddings.shape[1]))
    emb = all_gather_no_grad(embeddings.reshape(-1, dim))
    lab = all_gather_no_grad(labels)
    idx = all_gather_no_grad(indices)
    order = torch.argsort(idx)
    idx = idx[order]
    if idx.numel() != total or not torch.equal(idx, torch.arange(total, device=idx.device)):
        raise RuntimeError(f"evaluation embedded {idx.numel()} images for a set of {total}: "
                           "each image must be embedded exactly once")
    return emb[order], lab[order]
