"""``rcdml-train CONFIG [key=value ...]``: train (and evaluate) one run, alone or under torchrun."""
from __future__ import annotations

import sys
from typing import Sequence

from rcdml.cli.common import config_error, parse_config
from rcdml.distributed.launch import launch_world_size
from rcdml.errors import UserError
from rcdml.log import configure_logging

PROG = "rcdml-train"
# A run that started but stopped on a detected fault (non-finite loss, stalled rank).
EXIT_RUN_FAILED = 3
# Stopped by SIGTERM, SIGUSR1 or SIGINT after writing last.pt at the step every rank stopped
# at (EX_TEMPFAIL: run it again with train.resume=auto; launch/slurm/train.sbatch requeues).
EXIT_PREEMPTED = 75


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        cfg = parse_config(PROG, "Train an embedding network with RCDML or a baseline loss.", argv)
        from rcdml.cli.checks import check_training
        from rcdml.engine.checkpoint import check_output_dir

        # Before anything else: data and model work must not happen for a run that cannot write.
        check_output_dir(cfg.output_dir)
        check_training(cfg, launch_world_size())
    except UserError as e:
        return config_error(PROG, e)
    from rcdml.distributed import init_distributed, shutdown
    from rcdml.distributed.watchdog import CollectiveTimeout
    from rcdml.engine.trainer import NonFiniteLoss, Preempted, Trainer

    info = init_distributed(cfg.dist.backend, cfg.dist.timeout_s)
    try:
        Trainer(cfg, info).fit()
    except UserError as e:
        # Found once the run has started, e.g. a checkpoint of another model to resume from.
        return config_error(PROG, e)
    except (NonFiniteLoss, CollectiveTimeout) as e:
        # Every rank sees the same non-finite loss; print it once. A timeout is reported by
        # each surviving rank, since the one that names the stalled rank may not be rank 0.
        if isinstance(e, CollectiveTimeout) or info.rank == 0:
            print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_RUN_FAILED
    except Preempted as e:
        if info.rank == 0:
            print(f"{PROG}: {e}", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED
    finally:
        shutdown()
    return 0
