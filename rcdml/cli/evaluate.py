"""``rcdml-eval CONFIG checkpoint=PATH [key=value ...]``: evaluate a checkpoint's retrieval
quality on the config's evaluation split, alone or under torchrun."""
from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from rcdml.cli.common import config_error, parse_config, world_size_from_env
from rcdml.config import ConfigError

PROG = "rcdml-eval"


def split_checkpoint_arg(argv: Sequence[str]) -> tuple[str, list[str]]:
    rest, checkpoint = [], None
    for arg in argv:
        if arg.startswith("checkpoint="):
            checkpoint = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if not checkpoint:
        raise ConfigError("checkpoint: missing; pass checkpoint=PATH (e.g. runs/digits/best.pt)")
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"checkpoint: {checkpoint} is not a file")
    return checkpoint, rest


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        checkpoint, rest = split_checkpoint_arg(argv)
        cfg = parse_config(PROG, "Evaluate a checkpoint (Recall@K) on a dataset's eval split.", rest)
        from rcdml.engine.validate import validate

        validate(cfg, world_size_from_env())
    except ConfigError as e:
        return config_error(PROG, e)
    from rcdml.distributed import init_distributed, is_main, shutdown
    from rcdml.engine.evaluator import evaluate_checkpoint

    info = init_distributed(cfg.dist.backend, cfg.dist.timeout_s)
    try:
        results = evaluate_checkpoint(cfg, info, checkpoint)
    except ConfigError as e:
        shutdown()
        return config_error(PROG, e)
    try:
        if is_main():
            print(f"{'metric':<10}{'value':>10}")
            for name, value in results.items():
                print(f"{name:<10}{value:>10.4f}")
            out = os.path.splitext(checkpoint)[0] + ".eval.json"
            from rcdml.engine.checkpoint import atomic_write_text

            atomic_write_text(out, json.dumps({"checkpoint": checkpoint, **results}, indent=2) + "\n")
            print(f"wrote {out}")
    finally:
        shutdown()
    return 0
