"""Everything that talks to torch.distributed: process-group setup, rank helpers, gathers."""
from rcdml.distributed.env import (DistInfo, all_gather_object, barrier, broadcast_object,
                                   get_rank, get_world_size, init_distributed, is_distributed,
                                   is_main, main_process_first, shutdown)
from rcdml.distributed.gather import (all_gather_batch, all_gather_no_grad, all_gather_with_grad,
                                     equal_shards)

__all__ = ["DistInfo", "all_gather_batch", "all_gather_no_grad", "all_gather_object",
           "all_gather_with_grad", "barrier", "broadcast_object", "equal_shards", "get_rank",
           "get_world_size", "init_distributed", "is_distributed", "is_main", "main_process_first", "shutdown"]
