"""Checkpoint files of a run directory (the atomic writes and safe loads are in :mod:`rcdml.io`)."""
from __future__ import annotations

import os
import shutil


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
