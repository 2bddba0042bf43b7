"""Ranks that prove they agree before any work: same resolved config, no rank with an error.

Each rank launched by hand (or by torchrun on several nodes) parses its own command line, so
nothing else makes them equal: a rank started with another learning rate would train on with
different proxies, and a rank whose config check failed would leave the others waiting for it
until ``dist.timeout_s``. So every rank joins the process group even with a bad config and all
exchange (config digest, error) in one ``all_gather_object``: every rank learns every rank's
error and every disagreement at once, and all of them stop together.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from rcdml.config.identity import flatten
from rcdml.distributed.env import all_gather_object

# Keys that may differ from rank to rank: where a node finds the (same) data, e.g. a copy on
# node-local disk. The dataset checks validate what each rank finds there.
RANK_LOCAL_KEYS = ("data.root",)


def _shared(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if k not in RANK_LOCAL_KEYS}


def digest(flat: dict[str, Any]) -> str:
    """sha256 of the resolved config less its rank-local keys."""
    text = json.dumps(_shared(flat), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def disagreements(config: dict[str, Any] | None, error: str | None) -> list[str]:
    """A collective: every rank's (resolved config as a nested dict, or None when it could not be
    made; its error, or None). One line per problem, the same list on every rank: each rank's
    error, then each rank whose config differs from the lowest-ranked valid one, with the keys."""
    flat = flatten(config) if config is not None else None
    entries = all_gather_object((digest(flat) if flat is not None else None, flat, error))
    by_error: dict[str, list[int]] = {}
    for r, (_, _, err) in enumerate(entries):
        if err is not None:
            by_error.setdefault(err, []).append(r)
    # The usual case, the same mistake on every rank, is one line.
    problems = [f"{_ranks(ranks, len(entries))}: {err}" for err, ranks in by_error.items()]
    valid = [(r, d, f) for r, (d, f, err) in enumerate(entries) if err is None and f is not None]
    if not valid:
        return problems
    first, reference_digest, reference = valid[0]
    for r, d, f in valid[1:]:
        if d == reference_digest:
            continue
        ref, mine = _shared(reference), _shared(f)
        keys = sorted(k for k in ref.keys() | mine.keys() if ref.get(k) != mine.get(k))
        listed = ", ".join(f"{k} {ref.get(k)!r} on rank {first}, {mine.get(k)!r} on rank {r}"
                           for k in keys)
        problems.append(f"rank {r} resolved another config than rank {first}: {listed}; start "
                        "every rank with the same CONFIG and key=value overrides")
    return problems


def _ranks(ranks: list[int], world_size: int) -> str:
    if len(ranks) == world_size:
        return "every rank"
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))
