"""``rcdml-eval CONFIG checkpoint=PATH [key=value ...]``: evaluate a checkpoint's retrieval
quality on the config's evaluation split, alone or under torchrun.

Rank 0 prints a table and writes ``<checkpoint minus .pt>.eval.json`` (and, with
``eval.save_embeddings=true``, ``.query.npy``/``.query_labels.npy`` and for a separate gallery
``.gallery.npy``/``.gallery_labels.npy`` next to it), all atomically.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Sequence

from rcdml.cli.common import Command, config_error, parse_config
from rcdml.config import Config, ConfigError
from rcdml.errors import UserError
from rcdml.log import configure_logging, get_logger

log = get_logger(__name__)

PROG = "rcdml-eval"
COMMAND = Command(
    PROG, "CONFIG checkpoint=PATH [key=value ...]",
    "Evaluate a checkpoint on its dataset's evaluation split (Recall@K, MAP@R, R-Precision), "
    "alone or under torchrun.",
    example="rcdml-eval runs/digits/config.yaml checkpoint=runs/digits/best.pt",
    writes="runs/digits/best.eval.json (with eval.save_embeddings=true also best.query.npy and "
           "best.query_labels.npy)",
    keys=[("checkpoint=PATH", "checkpoint to evaluate, e.g. runs/digits/best.pt (required)"),
          ("eval.KEY=VALUE", "evaluation settings of the run config (eval.recall_at, "
           "eval.save_embeddings, ...); data.* chooses the dataset")])
# Options that print and exit before any checkpoint is needed.
HELP = {"-h", "--help", "--version", "--print-config"}


def split_checkpoint_arg(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    rest, checkpoint = [], None
    for arg in argv:
        if arg.startswith("checkpoint="):
            checkpoint = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if HELP & set(rest):
        return checkpoint, rest
    if not checkpoint:
        raise ConfigError("checkpoint: missing; pass checkpoint=PATH (e.g. runs/digits/best.pt)")
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"checkpoint: {checkpoint} is not a file")
    return checkpoint, rest


def output_stem(checkpoint: str) -> str:
    return os.path.splitext(checkpoint)[0]


def save_embeddings(stem: str, embeddings) -> list[str]:
    """Write the embeddings and labels as ``.npy`` files; returns their paths."""
    import numpy as np

    from rcdml.io import atomic_write_bytes

    arrays = {"query": embeddings.query, "query_labels": embeddings.query_labels}
    if embeddings.gallery is not None:
        arrays.update(gallery=embeddings.gallery, gallery_labels=embeddings.gallery_labels)
    paths = []
    for name, tensor in arrays.items():
        path = f"{stem}.{name}.npy"
        array = tensor.cpu().numpy()
        atomic_write_bytes(path, lambda f, a=array: np.save(f, a))
        paths.append(path)
    return paths


def report(cfg: Config, checkpoint: str, result) -> None:
    """Print the table and write the JSON (and embeddings): rank 0 only."""
    from rcdml.io import atomic_write_text

    emb = result.embeddings
    setting = ("retrieving among themselves" if emb.gallery is None
               else f"against a gallery of {emb.gallery.shape[0]}")
    log.info(f"{checkpoint} (epoch {result.epoch}) on {cfg.data.name}: "
             f"{emb.query.shape[0]} queries {setting}")
    log.info(f"{'metric':<10}{'value':>10}")
    for name, value in result.metrics.items():
        log.info(f"{name:<10}{value:>10.4f}")
    stem = output_stem(checkpoint)
    summary = {
        "checkpoint": checkpoint,
        "epoch": result.epoch,
        "dataset": cfg.data.name,
        "queries": emb.query.shape[0],
        "gallery": None if emb.gallery is None else emb.gallery.shape[0],
        # JSON has no NaN: MAP@R/RP are undefined (null) when no query has a match.
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in result.metrics.items()},
    }
    if cfg.eval.save_embeddings:
        summary["embeddings"] = save_embeddings(stem, emb)
    out = f"{stem}.eval.json"
    atomic_write_text(out, json.dumps(summary, indent=2) + "\n")
    log.info(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        checkpoint, rest = split_checkpoint_arg(argv)
        cfg = parse_config(COMMAND, rest)
        from rcdml.cli.checks import check_evaluation

        # Any number of ranks may evaluate a run: no training or world-size rules.
        check_evaluation(cfg)
        from rcdml.eval.checkpoint import evaluate_checkpoint, read_checked_checkpoint

        ckpt = read_checked_checkpoint(checkpoint, cfg)
    except UserError as e:
        return config_error(PROG, e)
    from rcdml.distributed import init_distributed, is_main, shutdown

    info = init_distributed(cfg.dist.backend, cfg.dist.timeout_s)
    try:
        from rcdml.eval.embed import amp_dtype

        result = evaluate_checkpoint(cfg, info, ckpt, checkpoint,
                                     amp_dtype(cfg.eval.amp, info.device))
        if is_main():
            report(cfg, checkpoint, result)
    except UserError as e:
        return config_error(PROG, e)
    finally:
        shutdown()
    return 0
