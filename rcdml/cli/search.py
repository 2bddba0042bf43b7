"""``rcdml-search INDEX (query=IMAGE_OR_DIR | queries=EMBEDDINGS) [k=10] [out=DIR]``: search an
``rcdml-index`` folder with images (embedded by the checkpoint named in the index's manifest,
which must have the index's fingerprint) or with an ``rcdml-embed`` folder of the same model.

Writes ``out/results.json`` (per query: ids, paths, labels, scores; the top-1 accuracy where
labels are known) and ``out/grid.png`` (each query and its top-k, green/red frames for a
correct/wrong label). A query never returns its own image.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from rcdml.cli.common import Command, config_error, dataclass_keys
from rcdml.config import ConfigError
from rcdml.deploy.settings import SearchArgs
from rcdml.errors import UserError
from rcdml.log import configure_logging

PROG = "rcdml-search"
COMMAND = Command(
    PROG, "INDEX (query=IMAGE_OR_DIR | queries=EMBEDDINGS) [k=10] [out=DIR] [key=value ...]",
    "Search an rcdml-index folder with images (embedded by the checkpoint named in the index's "
    "manifest) or with an rcdml-embed folder of the same model. A query never returns itself.",
    example="rcdml-search runs/digits/embeddings/index query=data/digits_eval/7 k=10",
    writes="runs/digits/embeddings/index/search/: results.json (per query: ids, paths, labels, "
           "scores; top-1 accuracy where labels are known) and grid.png (out= chooses the folder)",
    keys=dataclass_keys(SearchArgs))


def check_fingerprint(key: str, name: str, found: str, index_manifest: dict, index: str) -> None:
    """Embeddings of another model are not comparable with the index's: refuse them."""
    built = index_manifest["embeddings"]
    if found != built["fingerprint"]:
        raise ConfigError(f"{key}: {name} has model fingerprint {found[:12]} but {index} was built "
                          f"with {built['fingerprint'][:12]} ({built['checkpoint']}); use that "
                          "model or rebuild the index with rcdml-embed and rcdml-index")


def query_images(args, manifest: dict, index: str):
    """(query items, their embeddings) of ``query=``, embedded with the index's model."""
    from rcdml.config import Config
    from rcdml.config.typed import build
    from rcdml.deploy.embed import embed_items, list_images, readable
    from rcdml.deploy.model import load_trained
    from rcdml.deploy.settings import require_path
    from rcdml.deploy.store import Items
    from rcdml.distributed import init_distributed, shutdown

    require_path("query", args.query, "IMAGE_OR_DIR")
    cfg = build(Config, manifest["embeddings"]["config"])
    checkpoint = args.checkpoint or manifest["embeddings"]["checkpoint"]
    require_path("checkpoint", checkpoint, "runs/digits/best.pt", folder=False)
    model = load_trained(cfg, checkpoint)
    check_fingerprint("checkpoint", checkpoint, model.fingerprint, manifest, index)
    items = (list_images("query", args.query) if os.path.isdir(args.query)
             else Items([os.path.abspath(args.query)], [-1]))
    items = readable("query", items, cfg)
    info = init_distributed(cfg.dist.backend, cfg.dist.timeout_s)
    try:
        return items, embed_items(model, items, cfg, info)
    finally:
        shutdown()


def read_index(path: str, manifest: dict):
    """The faiss index at ``path``, which must hold the manifest's count of vectors."""
    from rcdml.deploy.index import deserialize

    with open(path, "rb") as f:
        data = f.read()
    try:
        index = deserialize(data)
    except RuntimeError as e:  # faiss's own message is a C++ assertion with source lines
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ConfigError(f"INDEX: {path} is not a readable faiss index ({len(data)} bytes: "
                          f"{reason}); build it again with rcdml-index") from None
    if index.ntotal != manifest.get("count", index.ntotal):
        raise ConfigError(f"INDEX: {path} holds {index.ntotal} vectors but its manifest counts "
                          f"{manifest['count']}; build it again with rcdml-index")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from rcdml.deploy.settings import parse_command
        from rcdml.deploy.store import INDEX, read_embeddings, read_folder

        index_dir, args = parse_command(SearchArgs, argv, "INDEX", "runs/digits/embeddings/index",
                                        COMMAND)
        if bool(args.query) == bool(args.queries):
            raise ConfigError("query: pass either query=IMAGE_OR_DIR or queries=EMBEDDINGS")
        configure_logging()
        path, items, manifest = read_folder("INDEX", index_dir, INDEX)
        if args.queries:
            vectors, query, emb_manifest = read_embeddings("queries", args.queries)
            check_fingerprint("queries", args.queries, emb_manifest["fingerprint"], manifest,
                              index_dir)
        else:
            query, vectors = query_images(args, manifest, index_dir)
        index = read_index(path, manifest)
    except UserError as e:
        return config_error(PROG, e)
    from rcdml.deploy.index import configure
    from rcdml.monitor.pictures import Row, grid
    from rcdml.deploy.search import results, search_items, spread_over_labels
    from rcdml.io import atomic_write_bytes, atomic_write_text

    if args.index is not None:
        configure(index, args.index)
    hits = search_items(index, items, vectors, query.paths, args.k, args.index)
    summary = results(hits, items, query)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), "search")
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(summary, indent=1) + "\n")
    message = f"{PROG}: {len(query.paths)} queries, k={args.k} -> {out}/results.json"
    if args.grid_queries:
        rows = [Row(r["query"], r["paths"], r["scores"],
                    [None if r["label"] < 0 or y < 0 else y == r["label"] for y in r["labels"]])
                for r in spread_over_labels(summary["queries"], args.grid_queries)]
        image = grid(rows)
        atomic_write_bytes(os.path.join(out, "grid.png"), lambda f: image.save(f, format="PNG"))
        message += " and grid.png"
    if summary["top1_accuracy"] is not None:
        message += f"; top-1 accuracy {summary['top1_accuracy']:.4f}"
    print(message)
    return 0
