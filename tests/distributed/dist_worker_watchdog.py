"""Worker for tests/distributed/test_watchdog.py: rank 1 sleeps past the gloo timeout, rank 0
prints what is_collective_timeout says of the errors gloo raises."""
from __future__ import annotations

import datetime
import os
import time

import torch
import torch.distributed as dist

from rcdml.distributed.watchdog import is_collective_timeout

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=2))
if dist.get_rank() == 1:
    time.sleep(6)
else:
    for collective in (lambda: dist.all_reduce(torch.ones(1)), dist.barrier):
        try:
            collective()
        except RuntimeError as e:
            os.write(1, f"timeout={is_collective_timeout(e)} {type(e).__name__}\n".encode())
