"""The checkpoint manager without a training process: one read on resume, fallback to prev.pt,
rotation that never puts an unreadable last.pt over a readable prev.pt, best.pt, the cadence."""
from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from rcdml.checkpoint_file import CheckpointWriteError, read_checkpoint
from rcdml.config import load_config
from rcdml.distributed import DistInfo
from rcdml.engine.backends import Backend
from rcdml.engine.checkpoint import (CheckpointManager, CheckpointMismatch, NoReadableCheckpoint,
                                     TrainState, rotate)
from rcdml.rundir import RunDir

DIST = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)


class Weights(Backend):
    """A backend whose whole trainable state is one tensor."""

    def __init__(self) -> None:
        self.w = torch.zeros(3)
        self.loads = 0

    def prepare(self): ...
    def __call__(self, images, labels): ...
    def backward(self, loss): ...
    def step(self, skip=False): ...

    def save_state(self, path: str) -> dict[str, Any]:
        return {"model": {"w": self.w.clone()}, "loss": {}}

    def load_state(self, path: str, ckpt: dict[str, Any]) -> None:
        self.w = ckpt["model"]["w"].clone()
        self.loads += 1


class Schedule:
    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": 0}


def manager(tmp_path, *overrides: str) -> tuple[CheckpointManager, Weights]:
    cfg = load_config(None, [f"output_dir={tmp_path}", *overrides])
    backend = Weights()
    return CheckpointManager(RunDir(str(tmp_path)), backend, cfg, DIST), backend


def save(ckpts: CheckpointManager, backend: Weights, value: float, epoch: int,
         improved: bool = False) -> None:
    backend.w = torch.full((3,), value)
    ckpts.save(TrainState(epoch=epoch, best={"metric": value, "epoch": epoch}), Schedule(), improved)


def damage(path) -> None:
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3:len(data) // 3 + 64] = bytes(64)
    open(path, "wb").write(bytes(data))


def damaged_last(tmp_path) -> bytes:
    """Two checkpoints, the newest damaged; the bytes of the good prev.pt."""
    ckpts, backend = manager(tmp_path)
    save(ckpts, backend, 1.0, epoch=1)
    save(ckpts, backend, 2.0, epoch=2)
    damage(tmp_path / "last.pt")
    return (tmp_path / "prev.pt").read_bytes()


def weight(path) -> float:
    return float(read_checkpoint(str(path))["model"]["w"][0])


def test_save_resume_round_trip_reads_the_file_once(tmp_path, monkeypatch):
    ckpts, backend = manager(tmp_path)
    save(ckpts, backend, 1.0, epoch=1, improved=True)
    save(ckpts, backend, 2.0, epoch=2)
    assert weight(tmp_path / "last.pt") == 2.0 and weight(tmp_path / "prev.pt") == 1.0
    assert weight(tmp_path / "best.pt") == 1.0
    assert os.stat(tmp_path / "best.pt").st_ino == os.stat(tmp_path / "prev.pt").st_ino

    import rcdml.engine.checkpoint as module
    reads = []
    monkeypatch.setattr(module, "read_checkpoint", lambda p: reads.append(p) or read_checkpoint(p))
    resumed, backend = manager(tmp_path, "train.resume=auto")
    state, said = TrainState(), []
    assert resumed.resume(state, False, said.append) == []
    assert reads == [str(tmp_path / "last.pt")] and backend.loads == 1
    assert state.epoch == 2 and float(backend.w[0]) == 2.0
    assert resumed.last_good == str(tmp_path / "last.pt")
    assert said == [f"resumed from {tmp_path / 'last.pt'} after epoch 2"]


def test_fallback_never_rotates_the_unreadable_last_over_prev(tmp_path):
    good_prev = damaged_last(tmp_path)

    resumed, backend = manager(tmp_path, "train.resume=auto")
    state, said = TrainState(), []
    resumed.resume(state, False, said.append)
    assert state.epoch == 1 and float(backend.w[0]) == 1.0
    assert "cannot read checkpoint" in said[0] and "damaged" in said[0]
    assert resumed.last_good == str(tmp_path / "prev.pt")
    save(resumed, backend, 3.0, epoch=2)
    assert (tmp_path / "prev.pt").read_bytes() == good_prev, "the good prev.pt is kept"
    assert weight(tmp_path / "last.pt") == 3.0
    save(resumed, backend, 4.0, epoch=3)
    assert weight(tmp_path / "prev.pt") == 3.0, "a readable last.pt rotates as usual"


def test_a_new_process_checks_last_before_rotating_it(tmp_path):
    good_prev = damaged_last(tmp_path)
    other, backend = manager(tmp_path, f"train.resume={tmp_path / 'prev.pt'}")
    other.resume(TrainState(), False, lambda line: None)
    save(other, backend, 3.0, epoch=2)
    assert (tmp_path / "prev.pt").read_bytes() == good_prev


def test_no_readable_checkpoint_leaves_the_files(tmp_path):
    damaged_last(tmp_path)
    (tmp_path / "prev.pt").write_bytes(b"cut")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    resumed, _ = manager(tmp_path, "train.resume=auto")
    with pytest.raises(NoReadableCheckpoint, match="no readable checkpoint: .*last.pt .*damaged.*; "
                                                   ".*prev.pt .*not a complete"):
        resumed.resume(TrainState(), False, lambda line: None)
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_checkpoint_of_another_run_is_refused_naming_the_key(tmp_path):
    ckpts, backend = manager(tmp_path)
    save(ckpts, backend, 1.0, epoch=1)
    other, _ = manager(tmp_path, "train.resume=auto", "model.embedding_size=32")
    with pytest.raises(CheckpointMismatch, match="model.embedding_size"):
        other.resume(TrainState(), False, lambda line: None)


def test_a_full_disk_keeps_both_checkpoints(tmp_path, monkeypatch):
    ckpts, backend = manager(tmp_path)
    save(ckpts, backend, 1.0, epoch=1)
    save(ckpts, backend, 2.0, epoch=2)

    def full(obj, f, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError, match="cannot write .*last.pt: no space left"):
        save(ckpts, backend, 3.0, epoch=3)
    monkeypatch.undo()
    # Rotation ran before the write: the newest readable checkpoint is prev.pt, and resume finds it.
    resumed, backend = manager(tmp_path, "train.resume=auto")
    state = TrainState()
    resumed.resume(state, False, lambda line: None)
    assert state.epoch == 2 and float(backend.w[0]) == 2.0


def test_cadence_and_candidates(tmp_path):
    ckpts, _ = manager(tmp_path, "train.checkpoint_every_steps=4")
    assert [s for s in range(1, 13) if ckpts.due(s)] == [4, 8, 12]
    assert not any(manager(tmp_path)[0].due(s) for s in range(1, 13))
    assert ckpts.candidates("auto", False) == [str(tmp_path / "last.pt"), str(tmp_path / "prev.pt")]
    assert ckpts.candidates("none", True) == [str(tmp_path / "last.pt"), str(tmp_path / "prev.pt")]
    assert ckpts.candidates("none", False) == [] and ckpts.candidates("x.pt", False) == ["x.pt"]


def test_rotate_moves_files_and_directories(tmp_path):
    (tmp_path / "last.pt").write_text("new")
    (tmp_path / "last.pt.ds").mkdir()
    (tmp_path / "prev.pt.ds").mkdir()
    (tmp_path / "prev.pt.ds" / "old").write_text("old")
    rotate([str(tmp_path / "last.pt"), str(tmp_path / "last.pt.ds")],
           [str(tmp_path / "prev.pt"), str(tmp_path / "prev.pt.ds")])
    assert (tmp_path / "prev.pt").read_text() == "new"
    assert (tmp_path / "prev.pt.ds").is_dir() and not (tmp_path / "prev.pt.ds" / "old").exists()
    assert not (tmp_path / "last.pt").exists()
