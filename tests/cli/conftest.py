"""A short digits run and the embeddings of its evaluation folder, shared by the deploy command
tests (rcdml-embed, -index, -search, -export) so the session trains it once."""
from __future__ import annotations

import shutil

import pytest

from rcdml.cli import embed
from runs import fast, train

EVAL_CLASSES = ["5", "6", "7", "8", "9"]  # digits.yaml retrieves among the unseen digits 5-9


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """(run directory, config overrides, a copy of the evaluation folder) of a one-epoch run
    that draws 4 retrieval queries."""
    tmp = tmp_path_factory.mktemp("deploy")
    args = fast(tmp, "run", "train.epochs=1", "train.batch_size=80", "data.samples_per_class=16",
                "monitor.retrieval_queries=4")
    train(*args)
    folder = tmp / "evalset"
    for name in EVAL_CLASSES:
        shutil.copytree(tmp / "digits" / name, folder / name)
    return tmp / "run", args[1:], folder


@pytest.fixture(scope="session")
def embedded(digits_run):
    """rcdml-embed's output folder for the evaluation folder of :func:`digits_run`."""
    run_dir, overrides, folder = digits_run
    out = run_dir.parent / "emb"
    assert embed.main([str(run_dir / "config.yaml"), f"checkpoint={run_dir / 'best.pt'}",
                       f"input={folder}", f"out={out}"]) == 0
    return out
