"""The host syncs of one training epoch of the trainer on this rank (benchmarks/host_syncs.py),
as ``{"operation caller": count}``: called in-process for one process, or run under torchrun
(gloo), writing ``rank<R>.json`` into the folder given as its argument."""
from __future__ import annotations

import collections
import json
import os
import re
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]
import host_syncs  # noqa: E402
import loop  # noqa: E402
from rcdml.config import load_config  # noqa: E402
from rcdml.distributed import DistInfo, init_distributed  # noqa: E402
from rcdml.models import build_model  # noqa: E402

STEPS, LOG_EVERY = 4, 2


def epoch_syncs(output_dir: str, info: DistInfo) -> dict[str, int]:
    """Counted over the second epoch (the first does one-time work) of STEPS steps."""
    cfg = load_config(None, [f"output_dir={output_dir}", "model.backbone=conv4",
                             "model.embedding_size=16", "train.warmup_epochs=0", "train.epochs=3",
                             "train.progress=false", "monitor.sample_size=0",
                             f"train.log_every_steps={LOG_EVERY}"])
    torch.manual_seed(0)
    images = torch.randn(8, 3, 16, 16)
    labels = torch.arange(8) // 4
    trainer = loop.build_trainer(cfg, info, build_model(cfg.model), images, labels, STEPS)
    try:
        trainer.train_epoch(0, 0)
        with host_syncs.count_syncs() as syncs:
            trainer.train_epoch(1, 0)
    finally:
        trainer.monitor.close()
        trainer.run.release()
    return dict(collections.Counter(f"{op} {re.sub(r':[0-9]+ ', ' ', where)}"
                                    for op, where in syncs.ops))


if __name__ == "__main__":
    info = init_distributed("gloo")
    counts = epoch_syncs(os.path.join(sys.argv[1], "run"), info)
    with open(os.path.join(sys.argv[1], f"rank{info.rank}.json"), "w") as f:
        json.dump(counts, f)
