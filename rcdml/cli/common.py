"""Shared CLI plumbing: parse ``CONFIG [key=value ...]``, validate, report config errors as one
line with exit code 2 (printed by rank 0 only)."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any, Sequence

import rcdml
from rcdml.config import Config, dump_config, load_config
from rcdml.distributed.launch import launch_rank
from rcdml.errors import UserError

EXIT_CONFIG_ERROR = 2


def version_line(prog: str) -> str:
    return f"{prog} (rcdml {rcdml.__version__})"


def field_comments(cls: type) -> dict[str, str]:
    """The comment above each field of the dataclass ``cls``: the settings are documented there,
    next to their types and defaults, so help cannot drift from the code."""
    comments, pending = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        text = line.strip()
        if text.startswith("#"):
            pending.append(text.lstrip("#").strip())
        else:
            name = re.match(r"(\w+)\s*:", text)
            if name:
                comments[name[1]] = " ".join(pending)
            pending = []
    return comments


def dataclass_keys(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(``key=TYPE``, what it is with its default) for every field of ``cls``; a field that is
    itself a dataclass is listed key by key (``index.nprobe=int``)."""
    from rcdml.config.typed import type_name

    types_ = typing.get_type_hints(cls)
    comments = field_comments(cls)
    keys = []
    for f in dataclasses.fields(cls):
        tp = types_[f.name]
        if dataclasses.is_dataclass(tp):
            keys += dataclass_keys(tp, f"{prefix}{f.name}.")
            continue
        if any(dataclasses.is_dataclass(a) for a in typing.get_args(tp)):
            keys.append((f"{prefix}{f.name}.KEY=VALUE", comments.get(f.name, "")))
            continue
        default = (f.default if f.default is not dataclasses.MISSING else
                   f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        shown = "" if default in ("", None) else f" (default {default})"
        keys.append((f"{prefix}{f.name}={type_name(tp)}", comments.get(f.name, "") + shown))
    return keys


@dataclass(frozen=True)
class Command:
    """What ``--help`` says about a console script: its usage, purpose, ``key=value`` settings,
    a concrete example and where the example's output goes."""
    prog: str
    usage: str
    summary: str
    example: str
    writes: str
    keys: Sequence[tuple[str, str]] = ()

    def epilog(self) -> str:
        lines = []
        if self.keys:
            lines.append("settings (key=value):")
            width = min(28, max(len(k) for k, _ in self.keys) + 2)
            for key, what in self.keys:
                pad = "\n" + " " * (width + 2) if len(key) + 2 > width else " " * (width - len(key))
                lines.append(f"  {key}{pad}{what}")
            lines.append("")
        lines += ["example:", f"  {self.example}", f"  writes {self.writes}"]
        return "\n".join(lines)

    def help_text(self) -> str:
        return f"usage: {self.prog} {self.usage}\n\n{self.summary}\n\n{self.epilog()}"

    def answer(self, argv: Sequence[str]) -> None:
        """Print the help or the version and exit 0 when ``argv`` asks for either."""
        if {"-h", "--help"} & set(argv):
            print(self.help_text())
            raise SystemExit(0)
        if "--version" in argv:
            print(version_line(self.prog))
            raise SystemExit(0)


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
              "what each key means: docs/configuration.md"]
    return "\n".join(lines)


def parse_config(command: Command, argv: Sequence[str] | None) -> Config:
    """The run's config. ``--help``, ``--version`` and ``--print-config`` print and exit 0; a
    missing CONFIG prints one usage line and exits 2."""
    prog = command.prog
    usage = f"{prog} [-h] [--version] [--print-config] {command.usage}"
    parser = argparse.ArgumentParser(prog=prog, description=command.summary, usage=usage,
                                     epilog=command.epilog() + "\n\n" + sections_help(prog),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", metavar="CONFIG",
                        help="YAML recipe, e.g. configs/digits.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="run config overrides (section.key=value), e.g. data.root=DIR")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (recipe + overrides) and exit")
    parser.add_argument("--version", action="version", version=version_line(prog))
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


def parse_with_config(cls: type, command: Command,
                      argv: Sequence[str]) -> tuple[Any, Config]:
    """(``cls`` from its ``key=value`` arguments, the run config from ``CONFIG`` and the other
    overrides) of a command that needs a checkpoint; the checkpoint must be a file."""
    from rcdml.deploy.settings import require_path, split_args

    args, rest = split_args(cls, argv)
    cfg = parse_config(command, rest)
    require_path("checkpoint", args.checkpoint, "runs/digits/best.pt", folder=False)
    return args, cfg
