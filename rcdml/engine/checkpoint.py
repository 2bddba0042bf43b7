"""The run directory's one owner: lock, last/prev/best naming and rotation, resume candidates
with fallback, crash leftovers, and the typed errors a user sees as one line (exit code 2).

Modelled on torchtitan's ``CheckpointManager`` and timm's ``CheckpointSaver``: the trainer asks
it where to resume from and when to save; backends only write and read their own files (the
atomic writes and ``weights_only`` loads are in :mod:`rcdml.io`).

- **Lock.** Rank 0 holds ``fcntl.flock`` on ``output_dir/.lock`` for the run's life; the OS
  releases it when the process dies, so a crash leaves no stale lock. The file names the holder.
- **No silent overwrite.** A new run into a directory holding another run's checkpoints or
  metrics is refused; ``train.overwrite=true`` moves that run aside, never deletes it.
- **Rotation.** Before ``last.pt`` is written the previous one becomes ``prev.pt``; ``best.pt``
  is a hard link to the ``last.pt`` of the best epoch (no second copy of the optimizer state).
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import socket
from typing import Any, Callable

from rcdml.config import Config, ConfigError, dump_config
from rcdml.config.typed import to_dict
from rcdml.distributed import broadcast_object, is_main
from rcdml.io import TMP_PREFIX, TMP_SUFFIX, CheckpointReadError, atomic_write_text, read_checkpoint

LAST, PREV, BEST = "last.pt", "prev.pt", "best.pt"
LOCK = ".lock"
HISTORY = "config_history.jsonl"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


class RunDirError(ConfigError):
    """A run directory that cannot be used as asked; one line, exit code 2."""


class RunDirLocked(RunDirError):
    """Another live run holds the directory's lock."""


class RunExists(RunDirError):
    """A new run would replace another run's files."""


class NoReadableCheckpoint(RunDirError):
    """Checkpoints exist but none of them can be read; starting over would overwrite them."""


class CheckpointMismatch(RunDirError):
    """The checkpoint was trained with other values of the keys a checkpoint fixes."""


def check_output_dir(path: str) -> None:
    """``output_dir`` usable: not empty, not a file, writable (or creatable). Called before any
    data or model work, on every rank (each reads the same file system)."""
    if not path or not path.strip():
        raise RunDirError("output_dir: empty; set the run directory, e.g. output_dir=runs/digits")
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"output_dir: {path} is a file, not a directory; choose another path")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RunDirError(f"output_dir: {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"output_dir: {path} is not writable ({existing}: permission denied)")


def on_main(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0; its result, or the RunDirError it raised, on every rank, so all ranks
    stop together and only rank 0 prints."""
    error = result = None
    if is_main():
        try:
            result = fn()
        except RunDirError as e:
            error = (type(e), str(e))
    error, result = broadcast_object((error, result))
    if error is not None:
        raise error[0](error[1])
    return result


class CheckpointManager:
    """Owns ``output_dir``; every method that touches files runs on rank 0 only, or says so."""

    def __init__(self, output_dir: str, artifacts: Callable[[str], list[str]] = lambda p: [p]) -> None:
        self.output_dir = output_dir
        # The files/directories a backend writes for one checkpoint path (DeepSpeed: + shards).
        self.artifacts = artifacts
        self._lock_fd: int | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.output_dir, name)

    # -- ownership -----------------------------------------------------------------------------

    def acquire(self) -> None:
        """Rank 0: take the directory's lock or raise :class:`RunDirLocked` naming the holder."""
        os.makedirs(self.output_dir, exist_ok=True)
        fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise RunDirLocked(f"output_dir: {self.output_dir} is in use by another run ({holder}); "
                               "wait for it to finish or choose another output_dir") from None
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()} started {started}\n".encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def remove_leftovers(self) -> list[str]:
        """Rank 0, lock held: delete temp files a crash mid-write left (``.NAME.*.tmp``)."""
        removed = []
        for name in sorted(os.listdir(self.output_dir)):
            path = self.path(name)
            if name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX) and os.path.isfile(path):
                os.unlink(path)
                removed.append(name)
        return removed

    def describe_run(self) -> str | None:
        """What another run left here (epochs, best R@1), or None when nothing would be lost."""
        ckpts = [n for n in (LAST, PREV, BEST) if os.path.exists(self.path(n))]
        rows = _metric_rows(self.path(METRICS))
        if not ckpts and not rows:
            return None
        parts = []
        if rows:
            parts.append(f"{len(rows)} epochs in {METRICS}")
        if ckpts:
            try:
                ckpt = read_checkpoint(self.path(ckpts[0]))
                best = ckpt.get("best", {})
                detail = f"epoch {ckpt.get('epoch')}"
                if best.get("epoch", -1) >= 0:
                    detail += f", best R@1 {best['metric']:.4f} at epoch {best['epoch']}"
            except CheckpointReadError:
                detail = "unreadable"
            parts.append(f"{ckpts[0]} ({detail})")
        return ", ".join(parts)

    def move_aside(self) -> str:
        """Rank 0, lock held: move every file of the old run into a sibling directory."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        target = f"{self.output_dir.rstrip(os.sep)}.replaced-{stamp}"
        n = 1
        while os.path.exists(target):
            target, n = f"{self.output_dir.rstrip(os.sep)}.replaced-{stamp}-{n}", n + 1
        os.makedirs(target)
        for name in os.listdir(self.output_dir):
            if name != LOCK:
                os.replace(self.path(name), os.path.join(target, name))
        return target

    def open_new_run(self, resume: str, overwrite: bool, elastic_restart: bool) -> list[str]:
        """Every rank: lock, clean up, refuse or move aside another run. Returns the lines to
        print (rank 0)."""
        def run() -> list[str]:
            self.acquire()
            notes = []
            removed = self.remove_leftovers()
            if removed:
                notes.append(f"removed {len(removed)} temporary file(s) left by an interrupted "
                             f"write: {', '.join(removed)}")
            if resume != "none" or elastic_restart:
                return notes
            there = self.describe_run()
            if there is None:
                return notes
            if not overwrite:
                raise RunExists(
                    f"output_dir: {self.output_dir} holds another run ({there}); continue it with "
                    "train.resume=auto, choose another output_dir, or set train.overwrite=true "
                    "to move it aside and start over")
            notes.append(f"train.overwrite: moved the previous run ({there}) to {self.move_aside()}")
            return notes
        try:
            return on_main(run)
        except RunDirError:
            self.release()
            raise

    # -- resume ----------------------------------------------------------------------------------

    def candidates(self, resume: str, elastic_restart: bool) -> list[str]:
        """Checkpoints to try in order: the newest first, then its predecessor."""
        if resume == "auto" or elastic_restart:
            return [self.path(LAST), self.path(PREV)]
        return [] if resume == "none" else [resume]

    def first_readable(self, candidates: list[str], warn: Callable[[str], None]):
        """(path, checkpoint) of the first readable candidate, None when none exists; a file that
        cannot be read falls back to the next with a warning."""
        unreadable = []
        for path in candidates:
            if not os.path.exists(path):
                continue
            try:
                return path, read_checkpoint(path)
            except CheckpointReadError as e:
                unreadable.append(f"{e.path} ({e.why})")
                warn(f"warning: cannot read checkpoint {unreadable[-1]}; trying the previous one")
        if unreadable:
            raise NoReadableCheckpoint("train.resume: no readable checkpoint: " + "; ".join(unreadable)
                                       + " (the files are left as they are)")
        return None

    # -- saving ----------------------------------------------------------------------------------

    def rotate_last(self) -> None:
        """Rank 0: the current last checkpoint becomes prev before a new one is written, so a
        crash mid-write leaves a readable one."""
        rotate(self.artifacts(self.path(LAST)), self.artifacts(self.path(PREV)))

    def mark_best(self) -> None:
        """Rank 0: ``best.pt`` becomes the just-written ``last.pt`` (hard link, atomic rename;
        a copy where the file system has no hard links)."""
        last, best = self.path(LAST), self.path(BEST)
        tmp = os.path.join(self.output_dir, f"{TMP_PREFIX}{BEST}.link{TMP_SUFFIX}")
        if os.path.exists(tmp):
            os.unlink(tmp)
        try:
            os.link(last, tmp)
        except OSError:
            shutil.copyfile(last, tmp)
        os.replace(tmp, best)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Rank 0: ``summary.json``, the finished run's selected and last epochs."""
        atomic_write_text(self.path(SUMMARY), json.dumps(summary, indent=2) + "\n")

    def record_config(self, cfg: Config, epoch: int, step: int,
                      changes: list[tuple[str, Any, Any]]) -> None:
        """Rank 0: ``config.yaml`` is this run's config; ``config_history.jsonl`` gets one row
        per start (position, changed keys, full config), so earlier settings stay on record."""
        atomic_write_text(self.path("config.yaml"), dump_config(cfg))
        row = {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "epoch": epoch, "step": step,
               "changes": {key: [old, new] for key, old, new in changes}, "config": to_dict(cfg)}
        history = self.path(HISTORY)
        previous = open(history).read() if os.path.exists(history) else ""
        atomic_write_text(history, previous + json.dumps(row) + "\n")


def _metric_rows(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line for line in f if line.strip()]


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
