"""What the launcher (torchrun, Slurm through torchrun) says about this process before any process
group exists: the only place rcdml reads torchrun's environment variables. Imports no torch, so a
command line can answer ``--help`` or refuse a config quickly."""
from __future__ import annotations

import os


def env_int(name: str, default: int) -> int:
    """The integer launcher variable ``name``; ``default`` when unset or empty."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def launch_rank() -> int:
    """torchrun's ``RANK`` (0 in a single process)."""
    return env_int("RANK", 0)


def launch_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``); config checks run before the
    process group exists."""
    return env_int("WORLD_SIZE", 1)


def local_world_size() -> int:
    """The processes torchrun started on this node (they share its CPUs)."""
    return env_int("LOCAL_WORLD_SIZE", 1)


def elastic_restart() -> bool:
    """This worker was restarted by torchrun's ``--max-restarts`` (it resumes by itself)."""
    return env_int("TORCHELASTIC_RESTART_COUNT", 0) > 0
