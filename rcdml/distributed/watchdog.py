"""Turn a stuck collective into an error that names the ranks that stopped responding.

A collective that times out (``dist.timeout_s``) only tells a rank that *someone* did not show
up. On that error every rank that is still alive joins a monitored barrier on a side gloo group;
rank 0 learns from it which ranks are missing and says so, instead of the job hanging or dying
with an anonymous socket error.
"""
from __future__ import annotations

import datetime
import os
import re

import torch.distributed as dist

_GROUP = None
# How long the diagnosis waits for live ranks to check in after the collective timed out.
DIAGNOSIS_S = 5.0


class CollectiveTimeout(RuntimeError):
    """A collective waited longer than ``dist.timeout_s``; the message names the stalled ranks."""


def init_watchdog() -> None:
    """Create the side group; call on every rank right after the process group is up."""
    global _GROUP
    _GROUP = dist.new_group(backend="gloo")


def release_watchdog() -> None:
    """Forget the side group, so that destroying the process groups also ends its threads."""
    global _GROUP
    _GROUP = None


# NCCL's own watchdog aborts a stalled job before Python sees an error (its default
# TORCH_NCCL_ASYNC_ERROR_HANDLING tears the process down). These defaults make it name the
# missing rank first: the desync report says which rank did not join the collective, and the
# flight recorder dumps each rank's last collectives on the timeout. A user's setting wins.
NCCL_ENV_DEFAULTS = {
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "3",
    "TORCH_NCCL_DESYNC_DEBUG": "1",
    "TORCH_NCCL_DUMP_ON_TIMEOUT": "1",
    "TORCH_NCCL_TRACE_BUFFER_SIZE": "2000",
}
# torch 2.14's gloo raises plain RuntimeErrors for its timeouts (these messages; checked by
# tests/distributed/test_watchdog.py), not the DistError types NCCL and the store raise.
_GLOO_TIMEOUTS = ("Timed out waiting", "Application timeout caused pair closure",
                  "Connection closed by peer")


def set_nccl_env_defaults() -> None:
    """Call before the NCCL process group is created (the variables are read then)."""
    for key, value in NCCL_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_collective_timeout(error: BaseException) -> bool:
    """torch's distributed errors by type (DistBackendError from NCCL's watchdog,
    DistNetworkError for a lost peer, DistStoreError); gloo's timeouts by their messages."""
    if isinstance(error, dist.DistError):
        return True
    return type(error) is RuntimeError and any(m in str(error) for m in _GLOO_TIMEOUTS)


def stalled_ranks(wait_s: float = DIAGNOSIS_S) -> list[int] | None:
    """Ranks that did not reach the monitored barrier (rank 0's view); None where unknown."""
    if _GROUP is None:
        return None
    try:
        dist.monitored_barrier(group=_GROUP, timeout=datetime.timedelta(seconds=wait_s),
                               wait_all_ranks=True)
    except RuntimeError as e:
        match = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", str(e))
        return [int(r) for r in match.group(1).replace(" ", "").split(",") if r] if match else None
    return []


def collective_timeout(error: BaseException, timeout_s: float) -> CollectiveTimeout:
    """The error to raise in place of ``error``, naming the stalled ranks when they are known."""
    ranks = stalled_ranks()
    me = dist.get_rank()
    if ranks:
        who = f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
        return CollectiveTimeout(f"{who} stopped responding: rank {me} waited more than "
                                 f"dist.timeout_s={timeout_s:g} s in a collective ({error})")
    return CollectiveTimeout(f"rank {me}: a collective failed or waited more than "
                             f"dist.timeout_s={timeout_s:g} s; another rank stalled or died ({error})")
