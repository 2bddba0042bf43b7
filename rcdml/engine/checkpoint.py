"""The one owner of a run's checkpoints, after torchtitan's ``CheckpointManager`` and timm's
``CheckpointSaver``: it holds the states that go into a checkpoint, decides when one is due,
rotates ``last.pt``/``prev.pt``/``best.pt``, reads the checkpoint to resume from once (verified,
falling back to the previous one) and hands each component its part.

Components expose ``state_dict()``/``load_state_dict()``: :class:`TrainState` (the run's
position, the epoch's running sums, the best epoch), the backend (network, proxies, optimizer,
loss scaler; DeepSpeed also writes its shards beside the file), every rank's RNG state and the
config. The file itself is written and read by :mod:`rcdml.checkpoint_file`; its names come from
:class:`rcdml.rundir.RunDir`.

- **Rotation.** Before ``last.pt`` is written the previous one becomes ``prev.pt``, unless it is
  known to be unreadable (a resume fell back past it): a damaged ``last.pt`` never replaces a
  good ``prev.pt``. ``best.pt`` is a hard link to the ``last.pt`` of the best epoch.
- **Commit point.** Rank 0 writes ``last.pt`` atomically after every rank has stored its part;
  a crash before the rename leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from rcdml.checkpoint_file import (CheckpointReadError, CheckpointWriteError, read_checkpoint, verify,
                                   write_checkpoint)
from rcdml.config import Config
from rcdml.config.identity import describe, split_differences
from rcdml.config.typed import to_dict
from rcdml.distributed import DistInfo, all_gather_object, barrier, is_main, on_main
from rcdml.engine.backends import Backend
from rcdml.engine.rng import rng_state, set_rng_state
from rcdml.io import TMP_PREFIX, TMP_SUFFIX
from rcdml.rundir import RunDir, RunDirError

# Keys whose change on resume says nothing about the run (how it was started, not what it does).
_STARTUP_KEYS = ("train.resume", "train.overwrite")


class NoReadableCheckpoint(RunDirError):
    """Checkpoints exist but none of them can be read; starting over would overwrite them."""


class CheckpointMismatch(RunDirError):
    """The checkpoint was trained with other values of the keys a checkpoint fixes."""


@dataclass
class TrainState:
    """A run's position: ``epoch`` epochs are complete and ``step`` steps of the next one are
    done; ``epoch_totals`` are that epoch's running loss sums, ``best`` the selected epoch, and
    ``row`` the metrics row of the epoch an epoch-end checkpoint completes (written to the
    metrics file just after the checkpoint: a resume restores it when a crash came between)."""
    epoch: int = 0
    step: int = 0
    epoch_totals: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=lambda: {"metric": -1.0, "epoch": -1})
    row: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "epoch_totals": dict(self.epoch_totals),
                "best": dict(self.best), "row": dict(self.row)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step = state["epoch"], state["step"]
        self.epoch_totals, self.best = dict(state["epoch_totals"]), dict(state["best"])
        self.row = dict(state.get("row", {}))  # checkpoints before the row was kept have none


def merge_totals(totals: dict[str, float], sums: dict[str, Any], counted: int) -> dict[str, float]:
    """``TrainState.epoch_totals`` plus the steps since: host-side running loss sums of the epoch
    (one sync), with the step count as ``_steps``."""
    merged = dict(totals)
    values = torch.stack(list(sums.values())).tolist() if sums else []
    for name, value in zip(sums, values):
        merged[name] = merged.get(name, 0.0) + value
    merged["_steps"] = merged.get("_steps", 0.0) + counted
    return merged


class CheckpointManager:
    def __init__(self, run: RunDir, backend: Backend, cfg: Config, dist: DistInfo) -> None:
        self.run = run
        self.backend = backend
        self.cfg = cfg
        self.dist = dist
        self.every_steps = cfg.train.checkpoint_every_steps
        # The newest checkpoint known to be complete (None: none yet), and what is known of
        # last.pt before the next rotation (None: not checked yet).
        self.last_good: str | None = None
        self._last_readable: bool | None = None

    def due(self, global_step: int) -> bool:
        """Whether the periodic cadence (``train.checkpoint_every_steps``) asks for a checkpoint
        after ``global_step`` steps."""
        return bool(self.every_steps) and global_step % self.every_steps == 0

    # -- resume ----------------------------------------------------------------------------------

    def candidates(self, resume: str, elastic_restart: bool) -> list[str]:
        """Checkpoints to try in order: the newest first, then its predecessor."""
        if resume == "auto" or elastic_restart:
            return [self.run.last, self.run.prev]
        return [] if resume == "none" else [resume]

    def first_readable(self, candidates: list[str],
                       say: Callable[[str], None]) -> tuple[str, dict[str, Any]] | None:
        """(path, checkpoint) of the first readable candidate, None when none exists; a file that
        cannot be read (cut short, damaged, foreign) falls back to the next with a warning."""
        unreadable: dict[str, str] = {}
        for path in candidates:
            if not os.path.exists(path):
                continue
            try:
                found = path, read_checkpoint(path)
            except CheckpointReadError as e:
                unreadable[path] = f"{e.path} ({e.why})"
                say(f"warning: cannot read checkpoint {unreadable[path]}; trying the previous one")
                continue
            if path == self.run.last:
                self._last_readable = True
            elif self.run.last in unreadable:
                self._last_readable = False  # the next save must not rotate it over prev.pt
            return found
        if unreadable:
            raise NoReadableCheckpoint("train.resume: no readable checkpoint: "
                                       + "; ".join(unreadable.values())
                                       + " (the files are left as they are)")
        return None

    def resume(self, state: TrainState, elastic_restart: bool,
               say: Callable[[str], None]) -> list[tuple[str, Any, Any]]:
        """Every rank: restore ``state``, the backend and this rank's RNG from the first readable
        candidate of ``train.resume`` (one read of one file). The keys a checkpoint fixes must
        match; the others take effect from here on and are returned as (key, old, new)."""
        found = self.first_readable(self.candidates(self.cfg.train.resume, elastic_restart), say)
        if found is None:
            return []
        path, ckpt = found
        fixed, changed = split_differences(ckpt.get("config", {}), to_dict(self.cfg))
        if fixed:
            raise CheckpointMismatch(f"train.resume: {path} was trained with other values of keys "
                                     f"a checkpoint fixes: {describe(fixed)}; resume with the old "
                                     "values, or start a new run in another output_dir")
        try:
            self.backend.load_state(path, ckpt)
        except ValueError as e:  # the backend's own files do not fit (e.g. another backend)
            raise RunDirError(str(e)) from None
        state.load_state_dict(ckpt)
        if len(ckpt["rng"]) == self.dist.world_size:
            set_rng_state(ckpt["rng"][self.dist.rank])
        self.last_good = path
        where = f"epoch {state.epoch}" + (f" + {state.step} steps" if state.step else "")
        say(f"resumed from {path} after {where}")
        return [c for c in changed if c[0] not in _STARTUP_KEYS]

    # -- saving ----------------------------------------------------------------------------------

    def save(self, state: TrainState, scheduler: Any, improved: bool) -> None:
        """Every rank: checkpoint ``state`` as ``last.pt`` (the previous one becomes ``prev.pt``
        first); with ``improved``, ``best.pt`` becomes it too. A full disk is one
        :class:`CheckpointWriteError` on every rank, the files already there intact."""
        content = {**state.state_dict(), "scheduler": scheduler.state_dict(),
                   "rng": all_gather_object(rng_state()), "config": to_dict(self.cfg)}
        if is_main():
            self._rotate_last()
        barrier()
        saved = self.backend.save_state(self.run.last)
        content.update(saved)

        def commit() -> None:
            write_checkpoint(content, self.run.last)
            self.backend.after_save(self.run.last, saved)
            if improved:
                self._mark_best()

        on_main(commit, (CheckpointWriteError,))
        self.last_good = self.run.last
        self._last_readable = True

    def _rotate_last(self) -> None:
        """Rank 0: the current last checkpoint becomes prev before a new one is written, so a
        crash mid-write leaves a readable one; an unreadable last.pt is overwritten instead."""
        if not os.path.exists(self.run.last):
            return
        if self._last_readable is None:
            try:
                verify(self.run.last)
                self._last_readable = True
            except CheckpointReadError:
                self._last_readable = False
        if self._last_readable:
            rotate(self.backend.artifacts(self.run.last), self.backend.artifacts(self.run.prev))

    def _mark_best(self) -> None:
        """Rank 0: ``best.pt`` becomes the just-written ``last.pt`` (hard link, atomic rename;
        a copy where the file system has no hard links)."""
        tmp = os.path.join(self.run.output_dir, f"{TMP_PREFIX}{os.path.basename(self.run.best)}"
                                                f".link{TMP_SUFFIX}")
        if os.path.exists(tmp):
            os.unlink(tmp)
        try:
            os.link(self.run.last, tmp)
        except OSError:
            shutil.copyfile(self.run.last, tmp)
        os.replace(tmp, self.run.best)


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
