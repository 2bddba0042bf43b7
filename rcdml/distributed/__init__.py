"""Everything that talks to torch.distributed: process-group setup, rank helpers, gathers.

Names are imported on first use, so :mod:`rcdml.distributed.shard` and
:mod:`rcdml.distributed.launch` can be imported without torch (DALI's worker processes and the
command lines' early checks do).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "rcdml.distributed.env": ("DistInfo", "all_gather_object", "barrier", "broadcast_object",
                              "check_dist_config", "env_rank", "get_rank", "get_world_size",
                              "init_deepspeed_alone", "init_distributed", "is_distributed", "is_main", "main_process_first",
                              "on_main", "shutdown", "sum_over_ranks"),
    "rcdml.distributed.gather": ("all_gather_batch", "all_gather_no_grad", "all_gather_with_grad",
                                 "equal_shards"),
    "rcdml.distributed.launch": ("elastic_restart", "launch_rank", "launch_world_size",
                                 "local_world_size"),
    "rcdml.distributed.shard": ("rank_share",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'rcdml.distributed' has no attribute {name!r}")
