"""``rcdml-train CONFIG [key=value ...]``: train (and evaluate) one run, alone or under torchrun."""
from __future__ import annotations

import signal
import sys
from typing import Sequence

from rcdml.cli.common import Command
from rcdml.distributed import stop
from rcdml.distributed.stop import EXIT_PREEMPTED  # noqa: F401 (the documented exit status)

PROG = "rcdml-train"
COMMAND = Command(
    PROG, "CONFIG [key=value ...]",
    "Train (and evaluate) an embedding network with RCDML or a baseline loss, alone or under "
    "torchrun. Every config key can be set as section.key=value.",
    example="rcdml-train configs/digits.yaml train.epochs=5 output_dir=runs/digits_5ep",
    writes="runs/digits_5ep/: config.yaml, metrics.jsonl, tensorboard/, retrieval/, last.pt, "
           "best.pt")
# A run that started but stopped on a detected fault (non-finite loss, stalled rank).
EXIT_RUN_FAILED = 3


def main(argv: Sequence[str] | None = None) -> int:
    # First of all, before the imports that take seconds: from here until the process exits a
    # stop request (SIGTERM, SIGUSR1, SIGINT) ends in the stop contract, never in a kill.
    stop.install()
    from rcdml.cli.common import EXIT_CONFIG_ERROR, config_error, parse_config
    from rcdml.config import ConfigError
    from rcdml.distributed.launch import launch_world_size
    from rcdml.errors import UserError
    from rcdml.log import configure_logging

    configure_logging()
    cfg = error = None
    try:
        cfg = parse_config(COMMAND, argv)
        from rcdml.cli.checks import check_training
        from rcdml.rundir import check_output_dir

        # Before anything else: data and model work must not happen for a run that cannot write.
        check_output_dir(cfg.output_dir)
        check_training(cfg, launch_world_size())
    except UserError as e:
        if launch_world_size() == 1:
            return config_error(PROG, e)
        error = e
    from rcdml.config import DistConfig
    from rcdml.config.typed import to_dict
    from rcdml.distributed import init_distributed, shutdown
    from rcdml.distributed.agree import disagreements
    from rcdml.distributed.watchdog import CollectiveTimeout
    from rcdml.engine.trainer import NonFiniteLoss, Preempted, Trainer

    # A rank with a bad config joins the group too, so that every rank hears of it at once.
    dist_cfg = cfg.dist if cfg is not None and error is None else DistConfig()
    info = init_distributed(dist_cfg.backend, dist_cfg.timeout_s)
    try:
        if info.world_size > 1:
            problems = disagreements(to_dict(cfg) if cfg is not None else None,
                                     str(error) if error is not None else None)
            if problems:
                for problem in problems:
                    config_error(PROG, ConfigError(problem))
                return EXIT_CONFIG_ERROR
        signum = stop.agreed(info.device)
        if signum:
            # Before the data and model work: nothing to save, the run directory is untouched.
            return _stopped(info.rank, f"stopped by {signal.Signals(signum).name} while starting, "
                                       "before any step; continue with train.resume=auto",
                            signal=signal.Signals(signum).name)
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
        return _stopped(info.rank, str(e), signal=signal.Signals(e.signum).name, epoch=e.epoch,
                        step=e.step, checkpoint=e.path)
    finally:
        shutdown()
    stop.record("finished")
    return 0


def _stopped(rank: int, message: str, **record) -> int:
    if rank == 0:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    stop.record("stopped", **record)
    return stop.exit_status()
