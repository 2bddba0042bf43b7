"""Process-group setup from the torchrun environment, and rank helpers used across the package.

All rank-dependent decisions go through these functions so that single-process runs (no process
group) and torchrun runs share one code path.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from rcdml.config import ConfigError, DistConfig
from rcdml.distributed.launch import env_int, launch_rank
from rcdml.distributed.watchdog import init_watchdog, release_watchdog, set_nccl_env_defaults


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None


def _attempt_store(timeout: datetime.timedelta) -> dist.Store | None:
    """torchrun's agent store, with keys private to this restart attempt.

    Still needed with torch 2.14: under TORCHELASTIC_USE_AGENT_STORE, env:// rendezvous
    (``torch.distributed.rendezvous._create_c10d_store``) makes each worker a plain TCPStore
    client of the agent's server at MASTER_ADDR:MASTER_PORT, "so no need to add prefix for each
    attempt" as its comment says; but the agent's server lives across ``--max-restarts``
    attempts (only the agent's own handle gets the per-round prefix of
    ``DynamicRendezvousHandler._wrap_store``), and ``init_process_group`` prefixes the keys with
    the constant "default_pg". So a restarted worker reads the gloo/NCCL addresses of the
    previous attempt's dead workers and fails to connect. A prefix per attempt
    (TORCHELASTIC_RESTART_COUNT) keeps each attempt's keys apart; the test that restarts a killed
    worker is tests/engine/test_fault_tolerance.py::
    test_elastic_restart_after_killed_worker_matches_uninterrupted.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    attempt = env_int("TORCHELASTIC_RESTART_COUNT", 0)
    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False, timeout=timeout)
    return dist.PrefixStore(f"rcdml/attempt_{attempt}", agent)


def check_dist_config(cfg: DistConfig) -> None:
    if cfg.backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("dist.backend: nccl needs a GPU; allowed here: auto, gloo")


def init_distributed(backend: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's RANK/WORLD_SIZE/LOCAL_RANK variables.

    ``backend='auto'`` picks NCCL when CUDA is available and gloo otherwise. Without torchrun (or
    with a world of one) no process group is created and the run is a plain single process.
    """
    world_size = env_int("WORLD_SIZE", 1)
    rank = env_int("RANK", 0)
    local_rank = env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend == "nccl" and not use_cuda:
        raise RuntimeError("dist.backend=nccl needs CUDA, but no GPU is visible; use gloo or auto")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = device
            set_nccl_env_defaults()
        store = _attempt_store(timeout)
        if store is not None:
            kwargs["store"] = store
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=timeout, **kwargs)
        init_watchdog()
    return DistInfo(rank, world_size, local_rank, device, backend if world_size > 1 else None)


def shutdown() -> None:
    """Destroy the process groups and drop every reference to them while Python is still alive.

    A gloo group keeps its worker threads until its last reference goes. Left to interpreter
    exit (DeepSpeed's world group, the watchdog's side group, cycles through a DeepSpeed engine),
    a worker still releasing a finished collective's tensors then cannot take the GIL and the
    process aborts (exit -6) after its work is done: seen under a loaded CPU, 5 exits in 60.
    """
    if not dist.is_initialized():
        return
    release_watchdog()
    ds_comm = sys.modules.get("deepspeed.comm")
    if ds_comm is not None and ds_comm.is_initialized():
        # DeepSpeed's own teardown: it also forgets the groups it keeps in deepspeed.utils.groups.
        ds_comm.destroy_process_group()
    else:
        dist.destroy_process_group()
    # Groups held only by reference cycles go now; their destructors join the worker threads
    # with the GIL released.
    gc.collect()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. materialising a dataset), the others after it is done."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def env_rank() -> int:
    """This process's rank: the process group's once there is one, before that (and in a single
    process) torchrun's ``RANK``, so what is printed before the group exists is not repeated."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return launch_rank()


def init_deepspeed_alone() -> None:
    """The process group DeepSpeed needs even in a single process: a world of one on any free
    port, with the ``LOCAL_RANK`` it reads."""
    import deepspeed

    os.environ.setdefault("LOCAL_RANK", "0")
    deepspeed.init_distributed(auto_mpi_discovery=False, init_method="tcp://127.0.0.1:0",
                               rank=0, world_size=1, verbose=False)


def sum_over_ranks(value: int, device: torch.device) -> int:
    """The sum of every rank's ``value``: one all-reduce and one host read (a collective: every
    rank calls it at the same point)."""
    if not is_distributed():
        return value
    total = torch.tensor([value], device=device)
    dist.all_reduce(total)
    return int(total)


def on_main(fn, errors: tuple[type[Exception], ...]) -> Any:
    """``fn()`` on rank 0; its result, or the error of one of the types ``errors`` it raised, on
    every rank, so all ranks stop together and only rank 0 prints."""
    error = result = None
    if is_main():
        try:
            result = fn()
        except errors as e:
            error = (type(e), str(e))
    error, result = broadcast_object((error, result))
    if error is not None:
        raise error[0](error[1])
    return result
