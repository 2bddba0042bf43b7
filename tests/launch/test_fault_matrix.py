"""The fault matrix: each fault a user or a cluster can cause, with the exit status, the message
and what it does to the run directory (the sha256 of every file before and after).

Three tables, one per kind of case; add a row to extend:
- STOPS: a stop request to a two-rank torchrun job (--max-restarts=3) started by
  launch/slurm/train.sbatch under a fake Slurm (``srun`` runs the command here, ``scontrol``
  records the requeue). The job stops without a restart, requeues once, and the requeued job
  ends with the parameters of an uninterrupted one (atol 0).
- DISAGREEMENTS: two ranks launched by hand (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT), rank 1
  alone with another override: both exit 2 at once, the one line names rank 1 and the key.
The refusals of bad input (exit 2, one line, nothing changed) are tests/cli/test_fault_refusals.py,
which shares the deploy tests' trained run.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import pytest

from conftest import ROOT
from runs import (ENV, TRAIN, assert_same_params, checkpoint_position, fast, folder_dataset,
                  free_port, tree, wait_for, worker_pids)

# Every test here starts processes (torchrun jobs): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

SBATCH = os.path.join(ROOT, "launch", "slurm", "train.sbatch")
JOB_ID = "4242"
FAKE_SRUN = """#!/bin/bash
# srun of one task on this node: drop srun's own options, run the task.
while [[ $1 == --* ]]; do shift; done
exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
if [[ $1 == show ]]; then echo localhost; exit 0; fi
echo "$*" >> "$SCONTROL_LOG"
"""


class Slurm:
    """A fake Slurm allocation of one node around the real torchrun and launch/slurm scripts."""

    def __init__(self, tmp_path) -> None:
        self.dir = tmp_path
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.stop_file = tmp_path / "stop.json"
        self.scontrol_log = tmp_path / "scontrol.log"
        self.env = dict(ENV, PATH=os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable),
                                                   os.environ.get("PATH", "/usr/bin:/bin")]),
                        SLURM_NNODES="1", SLURM_JOB_ID=JOB_ID, SLURM_JOB_NODELIST="localhost",
                        SLURM_SUBMIT_DIR=ROOT, GPUS_PER_NODE="2", MAX_RESTARTS="3",
                        RCDML_STOP_FILE=str(self.stop_file), SCONTROL_LOG=str(self.scontrol_log))

    def submit(self, log_name: str, *args: str) -> subprocess.Popen:
        log = open(self.dir / log_name, "w")
        return subprocess.Popen(["bash", SBATCH, *args], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT,
                                env=dict(self.env, RDZV_PORT=str(free_port())))

    def requeues(self) -> list[str]:
        if not self.scontrol_log.exists():
            return []
        return self.scontrol_log.read_text().splitlines()

    def record(self) -> dict:
        return json.loads(self.stop_file.read_text())


def torchrun_pid(batch: subprocess.Popen) -> int:
    """The torchrun process of the batch script (the fake srun execs it)."""
    def found() -> bool:
        try:
            with open(f"/proc/{batch.pid}/task/{batch.pid}/children") as f:
                children = f.read().split()
        except FileNotFoundError:
            return False
        for child in children:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    # torchrun (or the srun that execs it) followed by torchrun's options.
                    if re.search(rb"(^|\0)[^\0]*torchrun\0--", f.read()):
                        found.pid = int(child)
                        return True
            except FileNotFoundError:
                continue
        return False
    wait_for(found, batch)
    return found.pid


@pytest.fixture(scope="module")
def slurm_job(tmp_path_factory):
    """The uninterrupted job every stop is compared with: two ranks, one epoch."""
    tmp = tmp_path_factory.mktemp("matrix")
    slurm = Slurm(tmp)
    args = job_args(tmp, "straight")
    code = slurm.submit("straight.log", *args).wait(timeout=600)
    log = (tmp / "straight.log").read_text()
    assert code == 0, log[-4000:]
    assert slurm.requeues() == [] and slurm.record() == {"state": "finished"}
    return tmp


def job_args(tmp, name: str) -> list[str]:
    return fast(tmp, name, "train.epochs=1", "train.checkpoint_every_steps=3")


# -- stops ------------------------------------------------------------------------------------

def to_workers(batch: subprocess.Popen, torchrun: int) -> None:
    for pid in worker_pids(torchrun).values():
        os.kill(pid, signal.SIGTERM)


def usr1_to_batch_shell(batch: subprocess.Popen, torchrun: int) -> None:
    """Slurm's ``--signal=B:USR1@300``: the batch shell forwards SIGTERM to torchrun (via srun)."""
    os.kill(batch.pid, signal.SIGUSR1)


def usr1_to_torchrun(batch: subprocess.Popen, torchrun: int) -> None:
    os.kill(torchrun, signal.SIGUSR1)


@dataclass(frozen=True)
class Stop:
    name: str
    send: Callable[[subprocess.Popen, int], None]
    signal_name: str


STOPS = [
    Stop("sigterm-to-workers", to_workers, "SIGTERM"),
    Stop("sigterm-to-torchrun-from-the-usr1-trap", usr1_to_batch_shell, "SIGTERM"),
    Stop("sigusr1-to-torchrun", usr1_to_torchrun, "SIGUSR1"),
]


@pytest.mark.parametrize("case", STOPS, ids=[c.name for c in STOPS])
def test_stop_requeues_once_and_the_requeued_job_matches_an_uninterrupted_one(slurm_job, tmp_path,
                                                                              case):
    slurm = Slurm(tmp_path)
    args = job_args(slurm_job, case.name)
    run = slurm_job / case.name
    batch = slurm.submit("stopped.log", *args)
    torchrun = torchrun_pid(batch)
    wait_for(lambda: (checkpoint_position(run / "last.pt") or (0, 0))[1] > 0, batch)
    case.send(batch, torchrun)
    assert batch.wait(timeout=300) == 0
    log = (tmp_path / "stopped.log").read_text()
    # Stopped, not restarted: a restarted group resumes from last.pt by itself and trains to the
    # end (torchrun's own restart message is an INFO line it does not print).
    assert "resumed from" not in log and "final:" not in log, log[-4000:]
    assert slurm.requeues() == [f"requeue {JOB_ID}"], log[-4000:]
    record = slurm.record()
    assert record["state"] == "stopped" and record["signal"] == case.signal_name
    epoch, step = checkpoint_position(run / "last.pt")
    assert (record["epoch"], record["step"]) == (epoch, step) and epoch == 0 and step > 0
    lines = re.findall(r"rcdml-train: stopped by .*", log)
    assert lines == [f"rcdml-train: stopped by {case.signal_name} at epoch 1 step {step}; "
                     f"{run / 'last.pt'} holds that position; continue with train.resume=auto"]
    stopped = tree(run)
    assert {"last.pt", "config.yaml"} <= stopped.keys()

    # Slurm starts the requeued job with the same id and script.
    code = slurm.submit("requeued.log", *args).wait(timeout=600)
    log = (tmp_path / "requeued.log").read_text()
    assert code == 0, log[-4000:]
    assert f"+ {step} steps" in log
    assert slurm.requeues() == [f"requeue {JOB_ID}"] and slurm.record() == {"state": "finished"}
    assert_same_params(slurm_job / "straight" / "last.pt", run / "last.pt")
    assert stopped["config.yaml"] == tree(run)["config.yaml"]


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (FileNotFoundError, StopIteration):
        return False
    return bool(caught >> (signum - 1) & 1)


def test_stop_while_starting_requeues_with_a_message(slurm_job, tmp_path):
    """A SIGTERM during the workers' imports: no kill (143), no restart, one line, a requeue."""
    slurm = Slurm(tmp_path)
    batch = slurm.submit("early.log", *job_args(slurm_job, "early"))
    torchrun = torchrun_pid(batch)
    # As soon as both workers have installed their handlers: inside the imports that follow.
    wait_for(lambda: len(pids := worker_pids(torchrun)) == 2
             and all(catches(pid, signal.SIGTERM) for pid in pids.values()), batch)
    to_workers(batch, torchrun)
    assert batch.wait(timeout=300) == 0
    log = (tmp_path / "early.log").read_text()
    assert "resumed from" not in log and "final:" not in log, log[-4000:]
    assert slurm.requeues() == [f"requeue {JOB_ID}"], log[-4000:]
    assert slurm.record()["state"] == "stopped"
    assert len(re.findall(r"rcdml-train: stopped by SIGTERM (while starting, before any step|at "
                          r"epoch 1 step 0; no checkpoint yet)", log)) == 1, log[-4000:]
    assert not (slurm_job / "early" / "last.pt").exists()


# -- ranks that disagree ----------------------------------------------------------------------

@dataclass(frozen=True)
class Disagreement:
    name: str
    rank1: tuple[str, ...]
    message: str  # a regex the line must match
    folder: bool = False


DISAGREEMENTS = [
    Disagreement("bad-value-on-rank-1", ("train.epochs=0",),
                 r"^rcdml-train: config error: rank 1: train\.epochs: 0 is out of range"),
    Disagreement("other-value-on-rank-1", ("optim.lr=0.01",),
                 r"^rcdml-train: config error: rank 1 resolved another config than rank 0: "
                 r"optim\.lr 0\.0001 on rank 0, 0\.01 on rank 1;"),
    Disagreement("missing-data-on-rank-1", ("data.root=/nonexistent",),
                 r"^rcdml-train: config error: rank 1: data\.root: .*/nonexistent", folder=True),
]


@pytest.mark.parametrize("case", DISAGREEMENTS, ids=[c.name for c in DISAGREEMENTS])
def test_ranks_that_disagree_all_exit_2_naming_the_rank(tmp_path, case):
    common = fast(tmp_path, "run", "train.epochs=1")
    if case.folder:
        common += ["data.name=folder", f"data.root={folder_dataset(tmp_path / 'images')}",
                   "train.batch_size=8", "data.samples_per_class=2"]
    port = str(free_port())
    procs = []
    for rank, extra in ((0, ()), (1, case.rank1)):
        env = dict(ENV, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, TRAIN, *common, *extra], cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    # Not dist.timeout_s (1800 s): the ranks exchange their errors as soon as both are up.
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [2, 2], outputs
    assert outputs[1][1] == "", outputs[1][1]  # rank 0 alone prints
    lines = outputs[0][1].strip().splitlines()
    assert len(lines) == 1 and re.search(case.message, lines[0]), lines
    assert not (tmp_path / "run").exists()
