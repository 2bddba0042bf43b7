"""A run directory (``output_dir``): the one place that names its files, and its ownership.

Layout::

    .lock                  held by the live run's rank 0 (fcntl.flock; names the holder)
    last.pt, prev.pt       the newest checkpoint and its predecessor (DeepSpeed: + <name>.ds/)
    best.pt                hard link to the last.pt of the selected epoch
    metrics.jsonl          one row per evaluated or trained epoch
    tensorboard/           event files
    retrieval/             retrieval pictures, epoch_NNN.png and epoch_NNN_worst.png
    config.yaml            this run's config; config_history.jsonl: one row per start
    summary.json           the finished run's selected and last epochs

- **Lock.** Rank 0 holds ``fcntl.flock`` on ``.lock`` for the run's life; the OS releases it when
  the process dies, so a crash leaves no stale lock.
- **No silent overwrite.** A new run into a directory holding another run's checkpoints or
  metrics is refused; ``train.overwrite=true`` moves that run aside, never deletes it.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from typing import Any

from rcdml.checkpoint_file import CheckpointReadError, read_checkpoint
from rcdml.config import Config, dump_config
from rcdml.config.typed import to_dict
from rcdml.distributed import on_main
from rcdml.errors import UserError
from rcdml.io import TMP_PREFIX, TMP_SUFFIX, atomic_write_text

LAST, PREV, BEST = "last.pt", "prev.pt", "best.pt"


class RunDirError(UserError):
    """A run directory that cannot be used as asked; one line, exit code 2."""

    kind = "run directory error"


class RunDirLocked(RunDirError):
    """Another live run holds the directory's lock."""


class RunExists(RunDirError):
    """A new run would replace another run's files."""


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


def _file(name: str) -> property:
    return property(lambda self: self.path(name), doc=f"``output_dir/{name}``")


class RunDir:
    """Owns ``output_dir``: its file names, its lock, and the files that describe the run. Every
    method that touches files runs on rank 0 only, or says so."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self._lock_fd: int | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.output_dir, name)

    # -- file names ------------------------------------------------------------------------------

    last = _file(LAST)
    prev = _file(PREV)
    best = _file(BEST)
    metrics = _file("metrics.jsonl")
    tensorboard = _file("tensorboard")
    config = _file("config.yaml")
    history = _file("config_history.jsonl")
    summary = _file("summary.json")
    lock = _file(".lock")

    def retrieval_pictures(self, epoch: int) -> tuple[str, str]:
        """The sample and worst-query pictures of ``epoch``."""
        folder = self.path("retrieval")
        return (os.path.join(folder, f"epoch_{epoch:03d}.png"),
                os.path.join(folder, f"epoch_{epoch:03d}_worst.png"))

    # -- ownership -------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Rank 0: take the directory's lock or raise :class:`RunDirLocked` naming the holder."""
        os.makedirs(self.output_dir, exist_ok=True)
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
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
        ckpts = [p for p in (self.last, self.prev, self.best) if os.path.exists(p)]
        rows = _count_rows(self.metrics)
        if not ckpts and not rows:
            return None
        parts = []
        if rows:
            parts.append(f"{rows} epochs in {os.path.basename(self.metrics)}")
        if ckpts:
            try:
                ckpt = read_checkpoint(ckpts[0])
                best = ckpt.get("best", {})
                detail = f"epoch {ckpt.get('epoch')}"
                if best.get("epoch", -1) >= 0:
                    detail += f", best R@1 {best['metric']:.4f} at epoch {best['epoch']}"
            except CheckpointReadError:
                detail = "unreadable"
            parts.append(f"{os.path.basename(ckpts[0])} ({detail})")
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
            if self.path(name) != self.lock:
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
            return on_main(run, (RunDirError,))
        except RunDirError:
            self.release()
            raise

    # -- records ---------------------------------------------------------------------------------

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Rank 0: ``summary.json``, the finished run's selected and last epochs."""
        atomic_write_text(self.summary, json.dumps(summary, indent=2) + "\n")

    def record_config(self, cfg: Config, epoch: int, step: int,
                      changes: list[tuple[str, Any, Any]]) -> None:
        """Rank 0: ``config.yaml`` is this run's config; ``config_history.jsonl`` gets one row
        per start (position, changed keys, full config), so earlier settings stay on record."""
        atomic_write_text(self.config, dump_config(cfg))
        row = {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "epoch": epoch, "step": step,
               "changes": {key: [old, new] for key, old, new in changes}, "config": to_dict(cfg)}
        previous = open(self.history).read() if os.path.exists(self.history) else ""
        atomic_write_text(self.history, previous + json.dumps(row) + "\n")


def _count_rows(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())
