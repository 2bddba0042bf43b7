"""The stop contract: a stop request (SIGTERM, SIGUSR1, SIGINT) ends every rank at one step.

A signal only sets a flag, from the moment the entry point starts (before the heavy imports) to
the moment the process exits, so no stop request can kill a rank half-way. The ranks agree on
the flag with one all-reduce at fixed points (after joining the process group, before the first
step, and in every step's one host read, :func:`read_agreed`), so all of them stop together.

What a stop leaves behind (docs/fault_tolerance.md):

- exit status ``EXIT_PREEMPTED`` (75) for a plain process; under torchrun 0, because torchrun
  restarts a worker group with any other status (``--max-restarts``), and a stopped job must not
  train on;
- with ``RCDML_STOP_FILE`` set (launch/slurm/torchrun.sh sets it), rank 0 writes there one JSON
  record: ``{"state": "stopped", ...}`` after a stop, ``{"state": "finished"}`` after a complete
  run. A launcher reads it, whatever torchrun's own status (torchrun exits 1 when it was the one
  signalled), and requeues a stopped job.

This module imports no torch at module level: the entry point installs the handlers first.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
# EX_TEMPFAIL: not finished, run it again with train.resume=auto.
EXIT_PREEMPTED = 75
STOP_FILE_ENV = "RCDML_STOP_FILE"

_requested = 0
_installed = False


def _on_signal(signum: int, frame: Any) -> None:
    global _requested
    if _requested and signum == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C does not wait for the step to end
    _requested = _requested or signum


def install() -> dict[int, Any]:
    """Make the stop signals set the flag; returns the handlers replaced ({} when the handlers
    were installed already, or off the main thread, where Python cannot install them)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return {}
    previous = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    _installed = True
    if under_elastic():
        _stop_with_parent()
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back what :func:`install` replaced and forget any request (for library use: a
    process that ran ``rcdml-train`` keeps its handlers until it exits)."""
    global _installed, _requested
    if not previous:
        return
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    _installed = False
    _requested = 0


def requested() -> int:
    """The stop signal this process received (0: none)."""
    return _requested


def under_elastic() -> bool:
    """Started by torchrun (torch.distributed.elastic sets TORCHELASTIC_RUN_ID)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def _stop_with_parent() -> None:
    """A worker whose torchrun dies (e.g. a SIGUSR1 torchrun does not handle) gets SIGTERM and
    stops by the contract instead of training on as an orphan (Linux ``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # the parent died before prctl: no signal will come
        _on_signal(signal.SIGTERM, None)


def agreed(device: Any = None) -> int:
    """The stop signal any rank received (0: none). A collective: every rank calls it at the
    same point."""
    import torch

    if not _several_ranks():
        return _requested
    return read_agreed(torch.zeros(0, device=device))[0]


def read_agreed(values: Any) -> tuple[int, list[float]]:
    """:func:`agreed` and a host read of the 1-d tensor ``values``, which is equal on every
    rank, in one all-reduce and one read (a training step's only host sync). A collective."""
    import torch
    import torch.distributed as dist

    if not _several_ranks():
        return _requested, values.tolist()
    both = torch.cat([values.new_tensor([_requested]), values])
    # Equal values are their own maximum.
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    signum, *rest = both.tolist()
    return int(signum), rest


def _several_ranks() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def exit_status() -> int:
    """The status of a process that stopped by the contract (see the module's docstring)."""
    return 0 if under_elastic() else EXIT_PREEMPTED


def record(state: str, **fields: Any) -> None:
    """Write the stop record (rank 0 only; nothing without ``RCDML_STOP_FILE``), atomically."""
    path = os.environ.get(STOP_FILE_ENV)
    if not path or os.environ.get("RANK", "0") != "0":
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"state": state, **fields}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
