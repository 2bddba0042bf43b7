"""``rcdml-embed CONFIG checkpoint=PATH input=DIR_OR_LIST out=DIR [dtype=float16] [key=value ...]``:
embed every image of a folder tree or list file with a checkpoint's network and the run's
evaluation transform, alone or under torchrun (each image embedded once, on one rank).

Rank 0 writes ``out/embeddings.npy``, ``out/items.tsv`` (path and label of each row) and
``out/manifest.json`` (checkpoint, model settings, count, dimension, the model's fingerprint).
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from rcdml.cli.common import Command, config_error, dataclass_keys
from rcdml.config import ConfigError
from rcdml.deploy.settings import EmbedArgs
from rcdml.errors import UserError
from rcdml.log import configure_logging

PROG = "rcdml-embed"
COMMAND = Command(
    PROG, "CONFIG checkpoint=PATH input=DIR_OR_LIST out=DIR [key=value ...]",
    "Embed every image of a folder tree (each sub-folder's name is a label) or a list file with a "
    "checkpoint's network and the run's evaluation transform, alone or under torchrun.",
    example="rcdml-embed runs/digits/config.yaml checkpoint=runs/digits/best.pt "
            "input=data/digits_eval out=runs/digits/embeddings",
    writes="runs/digits/embeddings/: embeddings.npy, items.tsv (path and label per row), "
           "manifest.json",
    keys=dataclass_keys(EmbedArgs))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from rcdml.cli.common import parse_with_config
        from rcdml.deploy.settings import require_path

        args, cfg = parse_with_config(EmbedArgs, COMMAND, argv)
        require_path("input", args.input, "DIR_OR_LIST")
        if not args.out:
            raise ConfigError("out: missing; pass out=DIR, the folder for the embeddings")
        # Before the embedding work, not after it.
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ConfigError(f"out: {args.out} is a file; pass out=DIR, a folder for the "
                              "embeddings")
        from rcdml.deploy.embed import embed_items, list_images, manifest, readable
        from rcdml.deploy.model import load_trained

        configure_logging()
        items = readable("input", list_images("input", args.input), cfg)
        model = load_trained(cfg, args.checkpoint)
    except UserError as e:
        return config_error(PROG, e)
    from rcdml.deploy.store import write_embeddings
    from rcdml.distributed import init_distributed, is_main, shutdown

    info = init_distributed(cfg.dist.backend, cfg.dist.timeout_s)
    try:
        array = embed_items(model, items, cfg, info).astype(args.dtype)
        if is_main():
            write_embeddings(args.out, array, items, manifest(model, cfg, args.input, array))
            print(f"{PROG}: wrote {array.shape[0]} x {array.shape[1]} {args.dtype} embeddings "
                  f"to {args.out}")
    finally:
        shutdown()
    return 0
