"""``launch/evaluate.py`` end to end: train digits briefly, evaluate the checkpoint alone and
under torchrun, save embeddings, and refuse checkpoints of another model with one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from rcdml.cli.evaluate import main
from rcdml.eval import retrieval_metrics

# Every test here starts processes (training, torchrun, a command line): `-m "not slow"` skips them.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "launch", "train.py")
EVALUATE = os.path.join(ROOT, "launch", "evaluate.py")
DIGITS = os.path.join(ROOT, "configs", "digits8x8.yaml")
# Small images and few steps keep the run to seconds; the recipe is otherwise digits8x8.yaml.
FAST = ["train.epochs=1", "train.progress=false", "data.image_size=16", "data.resize_size=16",
        "train.batch_size=80", "data.samples_per_class=16", "eval.at_start=false"]


def run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    # One thread: on a shared 2-core machine, OpenMP spinning makes tiny convolutions 3x slower.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run directory, overrides) of a one-epoch digits run."""
    tmp = tmp_path_factory.mktemp("digits")
    overrides = FAST + [f"data.root={tmp / 'digits'}", f"output_dir={tmp / 'run'}"]
    result = run(TRAIN, DIGITS, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run", overrides


def final_eval_of_training(run_dir) -> dict[str, float]:
    with open(run_dir / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    return {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("eval/")}


@pytest.fixture(scope="module")
def evaluated(trained):
    """The JSON report of ``rcdml-eval`` on the run's best.pt, with embeddings saved."""
    run_dir, overrides = trained
    result = run(EVALUATE, DIGITS, f"checkpoint={run_dir / 'best.pt'}", *overrides,
                 "eval.save_embeddings=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "R@1" in result.stdout and "MAP@R" in result.stdout
    with open(run_dir / "best.eval.json") as f:
        return json.load(f)


def test_evaluation_matches_the_trainer_and_the_saved_embeddings(trained, evaluated):
    run_dir, _ = trained
    assert evaluated["epoch"] == 1 and evaluated["dataset"] == "digits8x8"
    assert evaluated["gallery"] is None
    # The same model was scored by the trainer at the end of its only epoch.
    assert evaluated["metrics"] == pytest.approx(final_eval_of_training(run_dir), abs=1e-12)
    query = np.load(run_dir / "best.query.npy")
    labels = np.load(run_dir / "best.query_labels.npy")
    assert query.shape == (evaluated["queries"], 128) and labels.shape == (evaluated["queries"],)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3, 4]  # digits 5-9, relabelled
    q, y = torch.from_numpy(query), torch.from_numpy(labels)
    assert retrieval_metrics(q, y, [1, 2, 4, 8]) == evaluated["metrics"]
    pml = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r",
                                      "r_precision"), k="max_bin_count",
                             device=torch.device("cpu")).get_accuracy(
        torch.nn.functional.normalize(q), y)
    # faiss ranks by float32 L2 distances, we by float32 cosines: near-ties may differ in rounding.
    assert evaluated["metrics"]["R@1"] == pytest.approx(pml["precision_at_1"], abs=1e-5)
    assert evaluated["metrics"]["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"],
                                                          abs=1e-5)
    assert evaluated["metrics"]["RP"] == pytest.approx(pml["r_precision"], abs=1e-5)


def test_torchrun_evaluation_equals_single_process(trained, evaluated, torchrun, tmp_path):
    run_dir, overrides = trained
    checkpoint = tmp_path / "copy.pt"
    checkpoint.write_bytes((run_dir / "best.pt").read_bytes())
    result = torchrun(EVALUATE, 2, [DIGITS, f"checkpoint={checkpoint}", *overrides])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # rank 0 alone reports
    with open(tmp_path / "copy.eval.json") as f:
        assert json.load(f)["metrics"] == evaluated["metrics"]


def test_checkpoint_of_another_model_exits_2_with_one_line(trained):
    run_dir, overrides = trained
    result = run(EVALUATE, DIGITS, f"checkpoint={run_dir / 'last.pt'}", *overrides,
                 "model.embedding_size=64")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("rcdml-eval: config error: model.embedding_size: ")
    assert "trained with 128" in lines[0] and "says 64" in lines[0]
    assert not (run_dir / "last.eval.json").exists()


def one_line_error(capsys, argv: list[str]) -> str:
    """``rcdml-eval argv`` in this process; the one stderr line of its exit-2 config error."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_checkpoint_of_another_backbone_is_a_config_error(trained, capsys):
    run_dir, overrides = trained
    line = one_line_error(capsys, [DIGITS, f"checkpoint={run_dir / 'last.pt'}", *overrides,
                                   "model.backbone=resnet50"])
    assert "model.backbone: " in line and "'resnet18'" in line and "'resnet50'" in line


@pytest.mark.parametrize("make, message", [
    (lambda tmp: [], "checkpoint: missing"),
    (lambda tmp: [f"checkpoint={tmp / 'nope.pt'}"], "is not a file"),
    (lambda tmp: [f"checkpoint={DIGITS}"], "cannot read"),
])
def test_bad_checkpoint_argument_is_a_config_error(tmp_path, capsys, make, message):
    line = one_line_error(capsys, [DIGITS, *make(tmp_path), f"data.root={tmp_path / 'digits'}"])
    assert message in line
