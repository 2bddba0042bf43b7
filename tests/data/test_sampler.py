"""Global-batch samplers: P classes x K images drawn from (seed, epoch, step), rank slices, resume;
and a torchrun/gloo run of the real pipeline with world size 2 (both loaders)."""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import torch

from rcdml.config import load_config
from rcdml.data import build_pipeline
from rcdml.data.sampler import BalancedBatchSampler, RandomBatchSampler
from rcdml.models.inputs import normalization
from rcdml.distributed import DistInfo

HERE = os.path.dirname(os.path.abspath(__file__))
# Five training classes (the folder reader trains on the first half of ten), one with fewer
# images than K, and the second half for evaluation.
PER_CLASS = [12, 10, 9, 11, 2, 3, 3, 3, 3, 3]
LABELS = [c for c, n in enumerate(PER_CLASS[:5]) for _ in range(n)]


def test_balanced_batches_have_p_classes_of_k_images():
    sampler = BalancedBatchSampler(LABELS, batch_size=6, samples_per_class=3, seed=1)
    labels = np.array(LABELS)
    seen_small = False
    for epoch in range(3):
        for step in range(sampler.steps_per_epoch):
            batch = sampler.global_batch(epoch, step)
            assert len(set(batch.tolist())) == len(batch), "an image twice in one batch"
            counts = Counter(labels[batch].tolist())
            assert len(counts) == 2
            for c, n in counts.items():
                assert n == min(3, PER_CLASS[c])
            seen_small |= 4 in counts
    assert seen_small, "the class with 2 images was never drawn in 3 epochs"


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_rank_slices_partition_the_global_batch(world_size):
    samplers = [BalancedBatchSampler(LABELS, batch_size=6, samples_per_class=3,
                                     world_size=world_size, rank=r, seed=5)
                for r in range(world_size)]
    alone = BalancedBatchSampler(LABELS, batch_size=6, samples_per_class=3, seed=5)
    for epoch in range(2):
        for step in range(alone.steps_per_epoch):
            slices = [s.rank_slice(epoch, step) for s in samplers]
            assert [pair for part in slices for pair in part] == alone.rank_slice(epoch, step)
            assert max(len(p) for p in slices) - min(len(p) for p in slices) <= 1


def test_batches_depend_on_seed_epoch_and_step_only():
    a = BalancedBatchSampler(LABELS, batch_size=6, samples_per_class=3, seed=3)
    b = BalancedBatchSampler(LABELS, batch_size=6, samples_per_class=3, seed=3)
    a.set_epoch(2)
    first = list(a)
    b.set_epoch(2, start_step=4)
    assert list(b) == first[4:] and len(b) == len(first) - 4
    a.set_epoch(3)
    assert list(a) != first
    other_seed = BalancedBatchSampler(LABELS, batch_size=6, samples_per_class=3, seed=4)
    other_seed.set_epoch(2)
    assert list(other_seed) != first


def test_random_sampler_covers_the_epoch_once():
    sampler = RandomBatchSampler(LABELS, batch_size=6, seed=0)
    sampler.set_epoch(1)
    indices = [i for batch in sampler for i, _ in batch]
    assert len(indices) == len(set(indices)) == (len(LABELS) // 6) * 6


def test_too_few_classes_is_an_error():
    with pytest.raises(ValueError, match="needs 4 classes"):
        BalancedBatchSampler(LABELS[:20], batch_size=8, samples_per_class=2)


def _single_process_indices(root: str, index_colors) -> list[list[int]]:
    """Dataset indices of epoch 0's batches in one process (world size 1)."""
    _, color_index = index_colors
    cfg = load_config(None, ["data.name=folder", f"data.root={root}", "data.image_size=8",
                             "data.resize_size=8", "data.flip=false", "data.num_workers=0",
                             "data.loader=torch", "train.batch_size=6",
                             "data.samples_per_class=3", "train.seed=7"])
    pipe = build_pipeline(cfg, DistInfo(0, 1, 0, torch.device("cpu"), None), normalization("imagenet"))
    norm = normalization("imagenet")
    std, mean = torch.tensor(norm.std), torch.tensor(norm.mean)
    return [[color_index(p.tolist()) for p in images[:, :, 0, 0] * std + mean]
            for images, _ in pipe.train_loader(0)]


@pytest.mark.slow
def test_world_size_2_ranks_share_global_batches_and_resume(torchrun, tmp_path, folder_dataset,
                                                            index_colors):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install 'rcdml[dali]')")
    root = str(tmp_path / "data")
    paths = folder_dataset(root, len(PER_CLASS), PER_CLASS, flat_index_colors=True, size=(8, 8))
    out = tmp_path / "out.json"
    result = torchrun(os.path.join(HERE, "dist_worker_pipeline.py"), 2,
                      [root, str(out), "6", "3"], timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = json.loads(out.read_text())
    label_of = {i: LABELS[i] for i in range(len(LABELS))}
    assert len(paths) == sum(PER_CLASS)
    reference = _single_process_indices(root, index_colors)
    for loader in ("torch", "dali"):
        r0, r1 = ranks[0][loader], ranks[1][loader]
        steps = r0["steps"]
        assert steps == len(LABELS) // 6 == len(r0["epoch0"]) == len(r1["epoch0"])
        for epoch in ("epoch0", "epoch1"):
            for a, b in zip(r0[epoch], r1[epoch]):
                assert not set(a["index"]) & set(b["index"]), "ranks share an image"
                joined = a["index"] + b["index"]
                counts = Counter(label_of[i] for i in joined)
                assert len(counts) == 2
                assert all(n == min(3, PER_CLASS[c]) for c, n in counts.items())
                for part in (a, b):
                    assert part["label"] == [label_of[i] for i in part["index"]]
        glued = [a["index"] + b["index"] for a, b in zip(r0["epoch0"], r1["epoch0"])]
        assert glued == reference, f"{loader}: world size 2 differs from one process"
        assert [a["index"] + b["index"] for a, b in zip(r0["epoch1"], r1["epoch1"])] != glued
        for rank in (r0, r1):
            assert rank["resumed"] == rank["epoch0"][3:]
            assert rank["len_resumed"] == steps - 3
            assert rank["after_resume"] == rank["epoch1"]
    assert ranks[0]["torch"] == ranks[0]["dali"] and ranks[1]["torch"] == ranks[1]["dali"]


def test_rows_per_rank_only_when_every_slice_is_equal():
    from rcdml.data.sampler import BalancedBatchSampler, RandomBatchSampler

    labels = [c for c in range(8) for _ in range(4)]
    assert BalancedBatchSampler(labels, 16, 4, world_size=2).rows_per_rank == 8
    assert BalancedBatchSampler(labels, 16, 4, world_size=3).rows_per_rank is None
    assert BalancedBatchSampler(labels + [8], 16, 4, world_size=2).rows_per_rank is None
    assert RandomBatchSampler(labels, 16, world_size=4).rows_per_rank == 4
    assert RandomBatchSampler(labels[:10], 16, world_size=2).rows_per_rank is None
    for sampler in (BalancedBatchSampler(labels, 16, 4, world_size=2, rank=1),
                    RandomBatchSampler(labels, 16, world_size=2, rank=1)):
        sampler.set_epoch(0)
        assert all(len(batch) == sampler.rows_per_rank for batch in sampler)
