"""Files a run writes and reads: atomic writes (temp file + rename) and safe checkpoint loads.

Every file rcdml writes goes through :func:`atomic_write_bytes`, so a crash or a full disk
mid-write leaves the previous file untouched; every checkpoint is read with
``weights_only=True``, so a file cannot run code when it is loaded.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from typing import Any

import torch

from rcdml.config import ConfigError

# Prefix and suffix of the temporary files; a crash mid-write can leave one behind, and the
# checkpoint manager removes such leftovers (``.NAME.*.tmp``) when it opens a run directory.
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"
# What torch.load raises for a file cut short or not a checkpoint at all.
_UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
               KeyError, IndexError, ValueError)


class CheckpointReadError(ConfigError):
    """A checkpoint or weights file that cannot be read; the message says why in one line and
    names the config key it came from."""

    def __init__(self, path: str, why: str, key: str = "checkpoint") -> None:
        self.path, self.why = path, why
        super().__init__(f"{key}: cannot read {path}: {why}")


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, write) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, then rename it over ``path``.

    A crash or a full disk mid-write leaves the previous file untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.path.basename(path)}.", suffix=TMP_SUFFIX,
                               dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    # mkstemp makes the file private; give it the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(state: dict[str, Any], path: str) -> None:
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_file(path: str, key: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU (memory-mapped when the file is a
    zip archive, as torch.save writes), or :class:`CheckpointReadError` in one line."""
    if not os.path.isfile(path):
        raise CheckpointReadError(path, "no such file", key)
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(path, "empty file (0 bytes)", key)
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


def read_checkpoint(path: str) -> dict[str, Any]:
    """The rcdml checkpoint at ``path``, or :class:`CheckpointReadError` in one line."""
    if os.path.isfile(path) and os.path.getsize(path) and not zipfile.is_zipfile(path):
        # rcdml writes zip archives; one cut short loses its central directory.
        raise CheckpointReadError(path, "not a complete torch.save archive (cut short, or not a "
                                        "checkpoint)")
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointReadError(path, "not an rcdml checkpoint (no 'model' weights)")
    return ckpt
