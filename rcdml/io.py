"""Atomic writes (temp file + rename): every file rcdml writes goes through
:func:`atomic_write_bytes`, so a crash or a full disk mid-write leaves the previous file untouched.
Checkpoints are written and read by :mod:`rcdml.checkpoint_file`.
"""
from __future__ import annotations

import os
import tempfile

# Prefix and suffix of the temporary files; a crash mid-write can leave one behind, and the
# checkpoint manager removes such leftovers (``.NAME.*.tmp``) when it opens a run directory.
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


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
