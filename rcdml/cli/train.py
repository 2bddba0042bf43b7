"""``rcdml-train CONFIG [key=value ...]``: train (and evaluate) one run, alone or under torchrun."""
from __future__ import annotations

from typing import Sequence

from rcdml.cli.common import config_error, parse_config, world_size_from_env
from rcdml.config import ConfigError

PROG = "rcdml-train"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse_config(PROG, "Train an embedding network with RCDML or a baseline loss.", argv)
        from rcdml.engine.validate import validate

        validate(cfg, world_size_from_env())
    except ConfigError as e:
        return config_error(PROG, e)
    from rcdml.distributed import init_distributed, shutdown
    from rcdml.engine.trainer import Trainer

    info = init_distributed(cfg.dist.backend, cfg.dist.timeout_s)
    try:
        Trainer(cfg, info).fit()
    finally:
        shutdown()
    return 0
