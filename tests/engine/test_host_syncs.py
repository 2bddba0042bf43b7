"""The host-device synchronisations of a training step, counted on the CPU
(benchmarks/host_syncs.py): every operation that would make the host wait for a GPU, in real
training steps of the trainer, held at its exact count so that none is added unnoticed."""
from __future__ import annotations

import collections
import os
import re

import torch

from conftest import ROOT, load_worker
from rcdml.config import load_config
from rcdml.distributed import DistInfo
from rcdml.models import build_model

loop = load_worker(os.path.join(ROOT, "benchmarks", "loop.py"))
host_syncs = load_worker(os.path.join(ROOT, "benchmarks", "host_syncs.py"))

STEPS, LOG_EVERY = 4, 2
# (operation, caller) -> count in one epoch of STEPS steps.
EXPECTED = {
    # per step, one read: the global batch's value checks, whether the loss is finite, the loss
    # on logging steps, and under DDP the stop flag (in the same all-reduce)
    ("tolist", "rcdml/distributed/stop.py read_agreed"): STEPS,
    # once per epoch, after the epoch's end has drained the queue anyway: the loss sums (loss
    # and RCDML's four terms, read together)
    ("tolist", "rcdml/engine/checkpoint.py merge_totals"): 1,
}


def test_a_training_step_syncs_the_host_exactly_as_listed(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}", "model.backbone=conv4",
                             "model.embedding_size=16", "train.warmup_epochs=0", "train.epochs=3",
                             "train.progress=false", "monitor.sample_size=0",
                             f"train.log_every_steps={LOG_EVERY}"])
    torch.manual_seed(0)
    images = torch.randn(8, 3, 16, 16)
    labels = torch.arange(8) // 4
    trainer = loop.build_trainer(cfg, DistInfo(0, 1, 0, torch.device("cpu"), None),
                                 build_model(cfg.model), images, labels, STEPS)
    try:
        trainer.train_epoch(0, 0)  # the first step's one-time work
        with host_syncs.count_syncs() as syncs:
            trainer.train_epoch(1, 0)
    finally:
        trainer.monitor.close()
        trainer.run.release()
    counts = collections.Counter((op, re.sub(r":\d+ ", " ", where)) for op, where in syncs.ops)
    assert dict(counts) == EXPECTED, syncs.summary()


def test_the_counter_sees_every_kind_of_sync_and_nothing_else():
    x = torch.arange(6.0)
    with host_syncs.count_syncs() as syncs:
        y = (x * 2 + 1).exp().sum(0)  # stays on the device
        x[torch.tensor([0, 2])].clamp_(0)
        float(y), bool(x.sum() > 0), x.tolist(), x.numpy(), x.cpu()
        x[x > 2], x.nonzero(), torch.unique(x), torch.masked_select(x, x > 1)
        x.repeat_interleave(torch.tensor([1, 0, 2, 1, 1, 1]))
    assert [op for op, _ in syncs.ops] == [
        "_local_scalar_dense", "_local_scalar_dense", "tolist", "numpy", "cpu", "index",
        "nonzero", "_unique2", "masked_select", "repeat_interleave"]
    assert all(where.startswith("test_host_syncs.py:") for _, where in syncs.ops)
