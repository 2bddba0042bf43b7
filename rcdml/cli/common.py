"""Shared CLI plumbing: parse ``CONFIG [key=value ...]``, validate, report config errors as one
line with exit code 2 (printed by rank 0 only)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rcdml.config import Config, ConfigError, load_config

EXIT_CONFIG_ERROR = 2


def parse_config(prog: str, description: str, argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("config", help="YAML recipe, e.g. configs/digits.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. train.epochs=5 loss.src_weight=0.02")
    # The deepspeed launcher passes --local_rank; LOCAL_RANK in the environment says the same.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return load_config(args.config, args.overrides)


def config_error(prog: str, error: ConfigError) -> int:
    if os.environ.get("RANK", "0") == "0":
        print(f"{prog}: config error: {error}", file=sys.stderr, flush=True)
    return EXIT_CONFIG_ERROR


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)
