"""Shared CLI plumbing: parse ``CONFIG [key=value ...]``, validate, report config errors as one
line with exit code 2 (printed by rank 0 only)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, Sequence

import rcdml
from rcdml.config import Config, dump_config, load_config
from rcdml.distributed.launch import launch_rank
from rcdml.errors import UserError

EXIT_CONFIG_ERROR = 2


def sections_help(prog: str) -> str:
    """The config's top-level keys with what each holds (from the schema), and how to see every
    key."""
    lines = ["config sections (set any key in the YAML or as section.key=value):"]
    types = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        section = types[f.name]
        what = section.__doc__ if dataclasses.is_dataclass(section) else "the run directory"
        lines.append(f"  {f.name:<11} {what}")
    lines += ["", f"every key with its resolved value: {prog} CONFIG --print-config [key=value ...]",
              "what each key means: the README's configuration reference"]
    return "\n".join(lines)


def parse_config(prog: str, description: str, argv: Sequence[str] | None) -> Config:
    """The run's config. ``--help``, ``--version`` and ``--print-config`` print and exit 0; a
    missing CONFIG prints one usage line and exits 2."""
    usage = f"{prog} [-h] [--version] [--print-config] CONFIG [key=value ...]"
    parser = argparse.ArgumentParser(prog=prog, description=description, usage=usage,
                                     epilog=sections_help(prog),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", metavar="CONFIG",
                        help="YAML recipe, e.g. configs/digits.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. train.epochs=5 loss.src_weight=0.02")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (recipe + overrides) and exit")
    parser.add_argument("--version", action="version", version=f"{prog} {rcdml.__version__}")
    # The deepspeed launcher passes --local_rank; LOCAL_RANK in the environment says the same.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    # Intermixed: options may come after the overrides, or between CONFIG and them.
    args = parser.parse_intermixed_args(argv)
    if args.config is None:
        if launch_rank() == 0:
            print(f"usage: {usage}  (CONFIG is required, e.g. configs/digits.yaml; see {prog} "
                  "--help)", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG_ERROR)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        if launch_rank() == 0:
            print(dump_config(cfg), end="", flush=True)
        raise SystemExit(0)
    return cfg


def config_error(prog: str, error: UserError) -> int:
    """Print ``error`` as one line naming what went wrong (rank 0); the exit code 2."""
    if launch_rank() == 0:
        print(f"{prog}: {error.kind}: {error}", file=sys.stderr, flush=True)
    return EXIT_CONFIG_ERROR


def parse_with_config(cls: type, prog: str, description: str,
                      argv: Sequence[str]) -> tuple[Any, Config]:
    """(``cls`` from its ``key=value`` arguments, the run config from ``CONFIG`` and the other
    overrides) of a command that needs a checkpoint; the checkpoint must be a file."""
    from rcdml.deploy.settings import require_path, split_args

    args, rest = split_args(cls, argv)
    cfg = parse_config(prog, description, rest)
    require_path("checkpoint", args.checkpoint, "runs/digits/best.pt", folder=False)
    return args, cfg
