"""Atomic writes: a failed write leaves the previous file intact; loads are weights_only."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from rcdml.checkpoint_file import read_file, write_checkpoint
from rcdml.io import atomic_write_bytes


def test_save_then_load_with_weights_only(tmp_path):
    path = tmp_path / "ckpt.pt"
    write_checkpoint({"w": torch.arange(3.0), "epoch": 2, "rng": [(1, 2)]}, str(path))
    loaded = read_file(str(path))
    assert torch.equal(loaded["w"], torch.arange(3.0)) and loaded["epoch"] == 2


def test_full_disk_mid_write_keeps_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    write_checkpoint({"epoch": 1}, str(path))

    def fail_half_way(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(str(path), fail_half_way)
    assert read_file(str(path)) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["last.pt"], "the temp file is removed"


def test_new_file_gets_umask_permissions(tmp_path):
    path = tmp_path / "x.txt"
    old = os.umask(0o022)
    try:
        atomic_write_bytes(str(path), lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (os.stat(path).st_mode & 0o777) == 0o644
