"""Turn a stuck collective into an error that names the ranks that stopped responding.

A collective that times out (``dist.timeout_s``) only tells a rank that *someone* did not show
up. On that error every rank that is still alive joins a monitored barrier on a side gloo group;
rank 0 learns from it which ranks are missing and says so, instead of the job hanging or dying
with an anonymous socket error.
"""
from __future__ import annotations

import datetime
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


def is_collective_timeout(error: BaseException) -> bool:
    text = str(error).lower()
    return "timed out" in text or "timeout" in text or "connection closed by peer" in text


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
