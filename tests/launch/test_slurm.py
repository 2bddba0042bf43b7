"""The sbatch scripts parse, and their dry run prints the srun/torchrun command they would run."""
from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from conftest import ROOT

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

SLURM = os.path.join(ROOT, "launch", "slurm")
SLURM_ENV = {"SLURM_NNODES": "2", "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-a,gpu-b",
             "SLURM_SUBMIT_DIR": ROOT, "RCDML_DRY_RUN": "1", "PATH": "/usr/bin:/bin"}


def dry_run(script: str, *args: str, **env: str) -> list[str]:
    result = subprocess.run(["bash", os.path.join(SLURM, script), *args], capture_output=True,
                            text=True, env={**SLURM_ENV, **env}, timeout=30)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


@pytest.mark.parametrize("script", ["train.sbatch", "evaluate.sbatch", "torchrun.sh"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", os.path.join(SLURM, script)]).returncode == 0


def test_train_dry_run_prints_the_torchrun_command():
    cmd = dry_run("train.sbatch", "configs/sop.yaml", "train.epochs=5")
    assert cmd == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "torchrun",
                   "--nnodes=2", "--nproc_per_node=8", "--rdzv_backend=c10d",
                   "--rdzv_endpoint=gpu-a:29500", "--rdzv_id=4242", "--max-restarts=3",
                   "launch/train.py", "configs/sop.yaml", "train.epochs=5", "train.resume=auto"]


def test_knobs_reach_the_command():
    cmd = dry_run("train.sbatch", "configs/cub.yaml", GPUS_PER_NODE="4", RDZV_PORT="31000",
                  MAX_RESTARTS="1")
    assert "--nproc_per_node=4" in cmd and "--rdzv_endpoint=gpu-a:31000" in cmd
    assert "--max-restarts=1" in cmd
    assert "--nproc_per_node=2" in dry_run("train.sbatch", "configs/cub.yaml", SLURM_GPUS_ON_NODE="2")


def test_evaluate_dry_run_has_no_restarts_and_keeps_arguments():
    cmd = dry_run("evaluate.sbatch", "configs/sop.yaml", "checkpoint=/runs/sop/best.pt")
    assert cmd[-3:] == ["launch/evaluate.py", "configs/sop.yaml", "checkpoint=/runs/sop/best.pt"]
    assert "--max-restarts=0" in cmd


def test_outside_slurm_it_says_so():
    env = {k: v for k, v in SLURM_ENV.items() if k != "SLURM_NNODES"}
    result = subprocess.run(["bash", os.path.join(SLURM, "train.sbatch"), "configs/sop.yaml"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode != 0 and "SLURM_NNODES" in result.stderr
