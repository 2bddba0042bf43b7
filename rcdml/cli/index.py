"""``rcdml-index EMBEDDINGS [out=DIR] [index.type=flat|ivfpq|hnsw|auto] [index.nprobe=...]``:
build a faiss index (inner product on l2-normalised vectors) of an ``rcdml-embed`` folder and
save it with the manifest and the id -> path/label mapping (``out/index.faiss``,
``out/items.tsv``, ``out/manifest.json``)."""
from __future__ import annotations

import os
import sys
import time
from typing import Sequence

from rcdml.cli.common import Command, config_error, dataclass_keys
from rcdml.deploy.settings import IndexArgs
from rcdml.errors import UserError
from rcdml.log import configure_logging

PROG = "rcdml-index"
COMMAND = Command(
    PROG, "EMBEDDINGS [out=DIR] [index.type=flat|ivfpq|hnsw|auto] [index.KEY=VALUE ...]",
    "Build a faiss index (inner product on l2-normalised vectors) of an rcdml-embed folder.",
    example="rcdml-index runs/digits/embeddings index.type=flat",
    writes="runs/digits/embeddings/index/: index.faiss, items.tsv, manifest.json",
    keys=dataclass_keys(IndexArgs))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from rcdml.deploy.settings import parse_command

        source, args = parse_command(IndexArgs, argv, "EMBEDDINGS", "runs/digits/embeddings",
                                     COMMAND)
        configure_logging()
        from rcdml.deploy.store import read_embeddings

        array, items, manifest = read_embeddings("EMBEDDINGS", source)
        from rcdml.deploy.index import build_index, choose_type, describe, unit_float32

        vectors = unit_float32(array)
        kind = choose_type(args.index, len(vectors))
        start = time.perf_counter()
        index = build_index(vectors, args.index)
        seconds = time.perf_counter() - start
    except UserError as e:
        return config_error(PROG, e)
    from rcdml.config.typed import to_dict
    from rcdml.deploy.index import serialize
    from rcdml.deploy.store import INDEX, write_folder

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(source))
                                   if os.path.isfile(source) else source, "index")
    data = serialize(index)
    write_folder(out, items, {"kind": "rcdml-index", "type": kind, "faiss": describe(index),
                              "index": to_dict(args.index), "count": len(vectors),
                              "dim": int(vectors.shape[1]), "build_seconds": seconds,
                              "embeddings": manifest}, INDEX, lambda f: f.write(data))
    print(f"{PROG}: {kind} index ({describe(index)}) of {len(vectors)} vectors in {seconds:.1f} s "
          f"-> {out}")
    return 0
