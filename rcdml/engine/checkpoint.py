"""Checkpoint files: atomic writes (temp file + rename) and safe loads (``weights_only``)."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import torch


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
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
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
    return torch.load(path, map_location="cpu", weights_only=True)


def rotate(current: list[str], previous: list[str]) -> None:
    """Move the files/directories of the current checkpoint over those of the previous one.

    Called before a new checkpoint is written: until the new one is complete, the previous good
    one stays on disk (and a resume falls back to it).
    """
    for src, dst in zip(current, previous):
        if not os.path.exists(src):
            continue
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        os.replace(src, dst)
