"""Embedding a shard and putting the shards back in dataset order (single process; the
torchrun case is in test_retrieval.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rcdml.config import load_config
from rcdml.eval.embed import amp_dtype
from rcdml.eval.embed import embed_shard, full_precision, gather_in_order


def test_embed_shard_keeps_loader_order_and_restores_train_mode():
    model = nn.Linear(3, 2)
    model.train()
    images = torch.randn(7, 3)
    loader = [(images[:4], torch.tensor([0, 1, 0, 1]), torch.tensor([5, 6, 7, 8])),
              (images[4:], torch.tensor([2, 2, 2]), torch.tensor([9, 10, 11]))]
    emb, labels, idx = embed_shard(model, loader, torch.device("cpu"))
    assert torch.allclose(emb, model(images))
    assert labels.tolist() == [0, 1, 0, 1, 2, 2, 2] and idx.tolist() == list(range(5, 12))
    assert model.training and not emb.requires_grad


def test_empty_shard_gives_an_empty_matrix():
    emb, labels, idx = embed_shard(nn.Linear(3, 2), [], torch.device("cpu"))
    assert emb.shape[0] == labels.numel() == idx.numel() == 0


def test_gather_puts_images_in_dataset_order():
    emb = torch.arange(8.0).reshape(4, 2)
    labels, order = torch.tensor([10, 11, 12, 13]), torch.tensor([2, 0, 3, 1])
    out, labels = gather_in_order(emb, labels, order, 4)
    assert out.tolist() == [[2, 3], [6, 7], [0, 1], [4, 5]]
    assert labels.tolist() == [11, 13, 10, 12]


@pytest.mark.parametrize("indices", [[0, 1, 1, 2], [0, 1, 2], [0, 1, 2, 4]])
def test_a_duplicated_or_missing_image_is_an_error(indices):
    n = len(indices)
    with pytest.raises(RuntimeError, match="exactly once"):
        gather_in_order(torch.zeros(n, 2), torch.zeros(n, dtype=torch.long),
                        torch.tensor(indices), 4)


def test_evaluation_is_fp32_under_bf16_training_unless_eval_amp_says_otherwise():
    cuda = torch.device("cuda", 0)
    cfg = load_config(None, ["train.amp=bf16"])
    assert cfg.eval.amp == "none" and amp_dtype(cfg.eval.amp, cuda) is None
    assert amp_dtype(load_config(None, ["eval.amp=bf16"]).eval.amp, cuda) == torch.bfloat16


def test_fp32_embedding_runs_without_tf32_and_restores_the_flags():
    seen = []

    class Probe(nn.Linear):
        def forward(self, x):
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
            return super().forward(x)

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        embed_shard(Probe(3, 2), [(torch.randn(2, 3), [0, 1], [0, 1])] * 2, torch.device("cpu"))
        assert seen == [(False, False)] * 2
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with pytest.raises(ZeroDivisionError), full_precision():
            1 / 0
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
