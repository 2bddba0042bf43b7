"""The rcdml checkpoint file: what it holds, how it is written, and the one place any checkpoint or
weights file is read (training's resume, ``rcdml-eval``, the deploy commands, ``model.pretrained``).

A checkpoint is one ``torch.save`` zip archive. Its members carry CRC-32s, so every read first
checks them (:func:`verify`, ``zipfile.testzip``): a byte flipped inside a tensor is refused by
name instead of evaluating or resuming with damaged weights. On a 52 MB archive the check took
0.016 s against 0.032 s for a SHA-256 of the file and 0.029 s for the load itself, and it needs
no sidecar file that rotation and ``best.pt``'s hard link would have to keep in step.
"""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import zipfile
from typing import Any, Mapping

import torch
from torch import nn

from rcdml.config import Config, ConfigError
from rcdml.config.identity import MODEL_KEYS, split_differences
from rcdml.config.typed import to_dict
from rcdml.errors import UserError
from rcdml.io import atomic_write_bytes

# The keys every rcdml checkpoint holds. The network and the loss's parameters (proxies) are
# stored in fp32 whatever the backend, so evaluation and deployment never need the backend.
MODEL, LOSS = "model", "loss"
# What the trainer adds (see rcdml.engine.checkpoint.TrainState): the run's position and config.
TRAINER_KEYS = ("epoch", "step", "epoch_totals", "best", "row", "rng", "scheduler", "config")
# What torch.load raises for a file cut short or not a checkpoint at all.
_UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
               KeyError, IndexError, ValueError)


class CheckpointReadError(UserError):
    """A checkpoint or weights file that cannot be read; the message says why in one line and
    names the config key it came from."""

    kind = "checkpoint error"

    def __init__(self, path: str, why: str, key: str = "checkpoint") -> None:
        self.path, self.why = path, why
        super().__init__(f"{key}: cannot read {path}: {why}")


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (a full disk); the files already there are intact."""

    kind = "checkpoint error"


def verify(path: str, key: str = "checkpoint", archive_only: bool = True) -> None:
    """Raise :class:`CheckpointReadError` unless ``path`` is a complete archive whose members
    match their CRC-32s. ``archive_only=False`` lets a file in torch's legacy (pre-1.6, non-zip)
    format through unchecked: such weights files (ports of old releases) carry no checksums."""
    if not os.path.isfile(path):
        raise CheckpointReadError(path, "no such file", key)
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(path, "empty file (0 bytes)", key)
    if not zipfile.is_zipfile(path):
        if archive_only:
            # rcdml writes zip archives; one cut short loses its central directory.
            raise CheckpointReadError(path, "not a complete torch.save archive (cut short, or not "
                                            "a checkpoint)", key)
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointReadError(path, f"damaged archive ({type(e).__name__}: {e})", key) from None
    if damaged is not None:
        raise CheckpointReadError(path, f"damaged: the checksum of its member {damaged} does not "
                                        "match (the file changed after it was written)", key)


def read_file(path: str, key: str = "checkpoint", archive_only: bool = False) -> Any:
    """The verified content of ``path``, loaded with ``weights_only=True`` onto the CPU
    (memory-mapped when it is a zip archive), or :class:`CheckpointReadError` in one line."""
    verify(path, key, archive_only)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except _UNREADABLE as e:
        text = str(e).strip()
        if "weights_only" in text:
            # torch's message goes on to suggest weights_only=False, which would let the file
            # run code; the refusal stands.
            why = "it holds objects other than tensors and plain containers (refused: loading them could run code)"
        else:
            why = f"{type(e).__name__}: {text.splitlines()[0][:200] if text else 'unreadable'}"
        raise CheckpointReadError(path, why, key) from None


def read_checkpoint(path: str, key: str = "checkpoint") -> dict[str, Any]:
    """The rcdml checkpoint at ``path``, verified, or :class:`CheckpointReadError` in one line."""
    ckpt = read_file(path, key, archive_only=True)
    if not isinstance(ckpt, dict) or MODEL not in ckpt:
        raise CheckpointReadError(path, "not an rcdml checkpoint (no 'model' weights)", key)
    return ckpt


def write_checkpoint(state: dict[str, Any], path: str) -> None:
    """``torch.save`` to ``path`` atomically; a full disk is one :class:`CheckpointWriteError`
    naming the path, and leaves the previous file as it was."""
    try:
        atomic_write_bytes(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as e:
        # torch.save reports a failed write of its zip writer as a RuntimeError naming its C++
        # source file; the OS error is what the user can act on.
        full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)
        if not full:
            raise
        raise CheckpointWriteError(f"checkpoint: cannot write {path}: no space left on device; "
                                   "the checkpoints already there are intact; free space and "
                                   "continue with train.resume=auto") from None


def check_model_config(ckpt: Mapping[str, Any], cfg: Config, path: str) -> None:
    """``ckpt`` was trained with ``cfg``'s model (the keys of
    :data:`rcdml.config.identity.MODEL_KEYS`), or a :class:`ConfigError` naming the first key."""
    fixed, _ = split_differences({"model": ckpt.get("config", {}).get("model", {})},
                                 {"model": to_dict(cfg)["model"]}, MODEL_KEYS)
    if fixed:
        key, old, new = fixed[0]
        raise ConfigError(f"{key}: {path} was trained with {old!r} but the config says {new!r}; "
                          "evaluate with the run's config.yaml or override the key")


def load_network(model: nn.Module, ckpt: Mapping[str, Any], path: str, cfg: Config) -> nn.Module:
    """``model`` (built from ``cfg.model``) with the network weights of ``ckpt``."""
    try:
        model.load_state_dict(ckpt[MODEL])
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise ConfigError(f"checkpoint: {path} does not fit model.backbone={cfg.model.backbone} "
                          f"model.embedding_size={cfg.model.embedding_size}: {detail}") from None
    return model


def fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors (names, dtypes, shapes, bytes) of ``state_dict``: equal for the
    same weights whatever file or process holds them."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
