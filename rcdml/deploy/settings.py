"""Typed ``key=value`` arguments of the rcdml.deploy commands. Keys that are fields of a
command's dataclass go to it; everything else is left for the run config (``model.*``,
``data.*``, ...). Errors are :class:`~rcdml.config.ConfigError` naming the key."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal, Sequence, TypeVar

from rcdml.config import ConfigError
from rcdml.config.load import apply_overrides, parse_override
from rcdml.config.typed import bounded, build
from rcdml.deploy.index import IndexConfig

T = TypeVar("T")


@dataclass
class EmbedArgs:
    # Checkpoint whose network embeds, e.g. runs/digits/best.pt.
    checkpoint: str = ""
    # A folder tree of images (each sub-folder a label: its name when every folder is named by an
    # integer, else its rank among the sorted folders) or a text file with one image path per
    # line and an optional tab-separated integer label (relative to the file's folder).
    input: str = ""
    # Output folder: embeddings.npy, items.tsv (path and label per row), manifest.json.
    out: str = ""
    # Storage type of embeddings.npy.
    dtype: Literal["float32", "float16"] = "float32"


@dataclass
class IndexArgs:
    # Output folder: index.faiss, items.tsv, manifest.json; default EMBEDDINGS/index.
    out: str = ""
    index: IndexConfig = field(default_factory=IndexConfig)


@dataclass
class SearchArgs:
    # An image or a folder tree of images to embed and search with.
    query: str = ""
    # Or the output folder of rcdml-embed: search with its embeddings.
    queries: str = ""
    # Results per query.
    k: int = bounded(10, ge=1)
    # Checkpoint that embeds query images; default the one named in the index's manifest.
    checkpoint: str = ""
    # Output folder: results.json and grid.png; default INDEX/search.
    out: str = ""
    # Queries drawn in grid.png, taken in turn from each label; 0: no picture.
    grid_queries: int = bounded(16, ge=0)
    # Search-time knobs (nprobe, refine, ef_search) override the index's.
    index: IndexConfig | None = None


@dataclass
class ExportArgs:
    # Checkpoint to export, e.g. runs/digits/best.pt.
    checkpoint: str = ""
    # onnx (torch.onnx, checked by onnx.checker), pt2 (torch.export's ExportedProgram, load with
    # torch.export.load) or torchscript (torch.jit.trace, deprecated in PyTorch: prefer pt2).
    format: Literal["onnx", "pt2", "torchscript"] = "onnx"
    # Output file; default the checkpoint with .onnx, .pt2 or .ts for .pt.
    out: str = ""
    # ONNX opset.
    opset: int = bounded(18, ge=13)
    # Evaluation images of the run's dataset on which the export must match PyTorch.
    parity_images: int = bounded(8, ge=1)


def split_args(cls: type[T], argv: Sequence[str]) -> tuple[T, list[str]]:
    """(``cls`` built from the ``key=value`` arguments whose key belongs to it, the others)."""
    names = {f.name for f in dataclasses.fields(cls)}
    mine, rest = [], []
    for arg in argv:
        is_mine = "=" in arg and not arg.startswith("-") and parse_override(arg)[0][0] in names
        (mine if is_mine else rest).append(arg)
    return build(cls, apply_overrides({}, mine)), rest


def require_path(key: str, value: str, example: str, folder: bool | None = None) -> str:
    """``value`` if the path exists (a folder when ``folder``, a file when False)."""
    if not value:
        raise ConfigError(f"{key}: missing; pass {key}={example}")
    exists = (os.path.isdir(value) if folder else os.path.isfile(value) if folder is False
              else os.path.exists(value))
    if not exists:
        kind = "a folder" if folder else "a file" if folder is False else "there"
        raise ConfigError(f"{key}: {value} is not {kind}")
    return value


def parse_command(cls: type[T], argv: Sequence[str], key: str, example: str,
                  command) -> tuple[str, T]:
    """(the one argument that is not ``key=value``, ``cls`` built from the others) of a command
    without a run config; a key that is not ``cls``'s is an error. ``--help`` and ``--version``
    print and exit 0 (``command`` is the :class:`rcdml.cli.common.Command`)."""
    command.answer(argv)
    plain = [a for a in argv if "=" not in a]
    if len(plain) != 1:
        raise ConfigError(f"{key}: pass exactly one {key} (e.g. {example}) and key=value "
                          f"settings; got {len(plain)} other arguments")
    args, unknown = split_args(cls, [a for a in argv if "=" in a])
    if unknown:
        allowed = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(f"{unknown[0].split('=')[0]}: unknown key; allowed: {allowed}")
    return plain[0], args
