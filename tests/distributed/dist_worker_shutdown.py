"""Worker for tests/distributed/test_env.py: joins the process group as rcdml-train does (with
DeepSpeed's communication layer and its world-group clone when asked), runs a collective, calls
shutdown(), and prints how many gloo worker threads are still alive (each group has its own)."""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from rcdml.distributed import init_distributed, shutdown


def gloo_threads() -> int:
    tasks = f"/proc/{os.getpid()}/task"
    names = [open(os.path.join(tasks, t, "comm")).read().strip() for t in os.listdir(tasks)]
    return names.count("pt_gloo_runloop")


init_distributed("gloo")
if "deepspeed" in sys.argv[1:]:
    import deepspeed
    from deepspeed.utils import groups

    deepspeed.init_distributed("gloo", auto_mpi_discovery=False, verbose=False)
    dist.all_reduce(torch.ones(1), group=groups._clone_world_group())
gathered = [torch.zeros(2) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, torch.ones(2))
before = gloo_threads()
shutdown()
print(f"rank {dist.get_rank() if dist.is_initialized() else os.environ['RANK']}: "
      f"gloo threads {before} -> {gloo_threads()}", flush=True)
