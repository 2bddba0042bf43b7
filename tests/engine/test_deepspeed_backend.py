"""DeepSpeed backend: step-for-step equal to DDP under ZeRO-0/1/2/3 (warm-up, value clipping and the
per-epoch schedule included), proxies bit-identical across ranks, exact resume from DeepSpeed's
sharded checkpoints, bf16, config contradictions, and an end-to-end digits run against DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT, run_torchrun
from rcdml.cli.checks import check_training
from rcdml.config import ConfigError, load_config
from rcdml.engine.backends.deepspeed_config import build_deepspeed_config

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'rcdml[deepspeed]')")

WORKER = os.path.join(ROOT, "tests", "engine", "dist_worker_deepspeed.py")
TRAIN = os.path.join(ROOT, "launch", "train.py")
EVALUATE = os.path.join(ROOT, "launch", "evaluate.py")
DIGITS = os.path.join(ROOT, "configs", "digits8x8.yaml")
CLIP = 0.02  # train.grad_clip_value of the worker
FP32_STAGES = ["0", "1", "2", "3"]
BF16_STAGES = ["0", "2"]


# --- the DeepSpeed config derived from the run config -------------------------------------------

def write_ds(tmp_path, content: dict) -> str:
    path = tmp_path / "ds.yaml"
    path.write_text(yaml.safe_dump(content))
    return str(path)


def run_cfg(*overrides: str):
    return load_config(DIGITS, ["train.backend=deepspeed", *overrides])


def test_derived_config_keeps_zero_settings_and_fills_the_run_values(tmp_path):
    path = write_ds(tmp_path, {"zero_optimization": {"stage": 2, "overlap_comm": True},
                               "bf16": {"enabled": True}, "train_batch_size": 40})
    ds = build_deepspeed_config(run_cfg(f"train.deepspeed_config={path}", "train.amp=bf16"), 4)
    assert ds["zero_optimization"] == {"stage": 2, "overlap_comm": True}
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"],
            ds["gradient_accumulation_steps"]) == (40, 10, 1)
    assert ds["gradient_clipping"] == 0.0
    assert ds["bf16"] == {"enabled": True} and ds["fp16"] == {"enabled": False}
    assert ds["data_types"]["buffer_dtype"] == "bf16"


def test_no_deepspeed_file_means_plain_data_parallel():
    ds = build_deepspeed_config(run_cfg(), 2)
    assert "zero_optimization" not in ds
    assert ds["train_micro_batch_size_per_gpu"] == 20
    assert not ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]


@pytest.mark.parametrize("content, keys", [
    ({"train_batch_size": 64}, ["train_batch_size", "train.batch_size"]),
    ({"train_micro_batch_size_per_gpu": 40}, ["train_micro_batch_size_per_gpu", "train.batch_size"]),
    ({"gradient_accumulation_steps": 2}, ["gradient_accumulation_steps", "train.batch_size"]),
    ({"gradient_clipping": 1.0}, ["gradient_clipping", "train.grad_clip_value"]),
    ({"bf16": {"enabled": True}}, ["bf16.enabled", "train.amp"]),
    ({"fp16": {"loss_scale": 0}}, ["fp16.enabled", "train.amp"]),
    ({"optimizer": {"type": "Adam", "params": {"lr": 0.1}}}, ["optimizer", "optim.name"]),
    ({"scheduler": {"type": "WarmupLR"}}, ["scheduler", "optim.scheduler"]),
])
def test_contradictions_name_both_keys(tmp_path, content, keys):
    cfg = run_cfg(f"train.deepspeed_config={write_ds(tmp_path, content)}")
    with pytest.raises(ConfigError) as err:
        check_training(cfg, world_size=2)
    for key in keys:
        assert key in str(err.value)


def test_deepspeed_not_installed_names_train_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    with pytest.raises(ConfigError, match=r"^train\.backend: deepspeed is not installed"):
        check_training(run_cfg())


def test_deepspeed_config_needs_the_deepspeed_backend(tmp_path):
    path = write_ds(tmp_path, {"zero_optimization": {"stage": 1}})
    with pytest.raises(ConfigError, match=r"^train\.deepspeed_config: .* train\.backend is ddp"):
        check_training(load_config(DIGITS, [f"train.deepspeed_config={path}"]))
    with pytest.raises(ConfigError, match=r"^train\.deepspeed_config: .* is not a file"):
        check_training(run_cfg(f"train.deepspeed_config={tmp_path / 'missing.yaml'}"))


@pytest.mark.slow
def test_contradictory_batch_size_exits_2_naming_both_keys(tmp_path):
    path = write_ds(tmp_path, {"zero_optimization": {"stage": 2}, "train_batch_size": 64})
    result = subprocess.run([sys.executable, TRAIN, DIGITS, "train.backend=deepspeed",
                             f"train.deepspeed_config={path}", f"output_dir={tmp_path / 'run'}"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "train_batch_size" in lines[0] and "train.batch_size" in lines[0]
    assert not (tmp_path / "run").exists()


# --- three steps under torchrun: DDP against ZeRO-0/1/2/3, fp32 and bf16 ------------------------

@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """One torchrun (2 gloo ranks) runs DDP and every DeepSpeed variant on the same batches."""
    out = tmp_path_factory.mktemp("deepspeed_steps")
    runs = (["ddp:-:none"] + [f"deepspeed:{s}:none" for s in FP32_STAGES]
            + [f"deepspeed:{s}:bf16" for s in BF16_STAGES])
    result = run_torchrun(WORKER, 2, [str(out), *runs], timeout=900, env={"DS_ACCELERATOR": "cpu"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    def load(run: str, suffix: str = "") -> dict:
        return torch.load(out / f"{run.replace(':', '_')}{suffix}.pt", weights_only=True)
    return load


def backbone_keys(result: dict) -> list[str]:
    return [k for k in result["init"] if k.startswith("model.backbone.")]


@pytest.mark.slow
def test_ddp_reference_clips_and_freezes(steps):
    """The reference exercises what must match: clipping binds at every step and warm-up leaves
    the backbone untouched."""
    ddp = steps("ddp:-:none")
    assert ddp["max_abs_grad"] == pytest.approx([CLIP] * 3)
    for key in backbone_keys(ddp):
        assert torch.equal(ddp["init"][key], ddp["after_warmup"][key]), key
    assert not torch.equal(ddp["init"]["model.head.weight"], ddp["after_warmup"]["model.head.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("stage", FP32_STAGES)
def test_zero_stage_matches_ddp_step_for_step(steps, stage):
    ddp, ds = steps("ddp:-:none"), steps(f"deepspeed:{stage}:none")
    assert ds["losses"] == pytest.approx(ddp["losses"], rel=1e-6)
    for key in backbone_keys(ds):
        assert torch.equal(ds["init"][key], ds["after_warmup"][key]), f"warm-up moved {key}"
    assert ds["final"].keys() == ddp["final"].keys()
    for key in ddp["final"]:
        torch.testing.assert_close(ds["final"][key], ddp["final"][key], rtol=1e-5, atol=1e-6, msg=key)
    assert ds["lrs"] == pytest.approx([0.005, 0.005, 0.05]), "the per-epoch schedule drives DeepSpeed"


@pytest.mark.slow
@pytest.mark.parametrize("run", [f"deepspeed:{s}:none" for s in FP32_STAGES]
                         + [f"deepspeed:{s}:bf16" for s in BF16_STAGES] + ["ddp:-:none"])
def test_proxies_bit_identical_across_ranks(steps, run):
    assert torch.equal(steps(run, ".proxies0"), steps(run, ".proxies1"))


@pytest.mark.slow
@pytest.mark.parametrize("run", [f"deepspeed:{s}:none" for s in FP32_STAGES]
                         + [f"deepspeed:{s}:bf16" for s in BF16_STAGES])
def test_resume_from_sharded_checkpoint_is_exact(steps, run):
    """A fresh backend from another seed, loaded from the checkpoint, takes the very same next
    step (optimizer shards, fp32 masters and learning rates restored)."""
    ds = steps(run)
    for key in ds["continued"]:
        assert torch.equal(ds["continued"][key], ds["resumed"][key]), key
    assert ds["resumed_lrs"] == ds["lrs"]
    assert ds["resumed_state"] == {"epoch": 3}


@pytest.mark.slow
@pytest.mark.parametrize("run", [f"deepspeed:{s}:none" for s in FP32_STAGES]
                         + [f"deepspeed:{s}:bf16" for s in BF16_STAGES])
def test_consolidated_file_holds_fp32_master_weights(steps, run):
    """``path`` alone (no DeepSpeed) holds the fp32 network and proxies: the weights the engine
    trains with are exactly these masters (rounded to bf16 under bf16)."""
    ds, ckpt = steps(run), steps(run, ".ckpt")
    assert {"model", "loss", "epoch", "scheduler", "deepspeed"} <= ckpt.keys()
    weights = {**{f"model.{k}": v for k, v in ckpt["model"].items()},
               **{f"loss.{k}": v for k, v in ckpt["loss"].items()}}
    low = torch.bfloat16 if run.endswith("bf16") else torch.float32
    for key, live in ds["final"].items():
        assert weights[key].dtype == torch.float32, key
        assert torch.equal(weights[key].to(low).float(), live), key


@pytest.mark.slow
def test_single_process_equals_two_ranks(steps, tmp_path):
    """Without torchrun the backend makes DeepSpeed its own world of one; one process on the
    global batch takes the steps of two DDP ranks."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    result = subprocess.run([sys.executable, WORKER, str(tmp_path), "deepspeed:1:none"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    single = torch.load(tmp_path / "deepspeed_1_none.pt", weights_only=True)
    ddp = steps("ddp:-:none")
    assert single["losses"] == pytest.approx(ddp["losses"], rel=1e-5)
    for key in ddp["final"]:
        torch.testing.assert_close(single["final"][key], ddp["final"][key], rtol=1e-4, atol=1e-5, msg=key)
    for key in single["continued"]:
        assert torch.equal(single["continued"][key], single["resumed"][key]), key


@pytest.mark.slow
@pytest.mark.parametrize("stage", BF16_STAGES)
def test_bf16_keeps_the_loss_in_fp32(steps, stage):
    ddp, ds = steps("ddp:-:none"), steps(f"deepspeed:{stage}:bf16")
    assert ds["proxies_dtype"] == "torch.bfloat16" and ds["loss_dtype"] == "torch.float32"
    assert ds["losses"][0] == pytest.approx(ddp["losses"][0], rel=1e-2)
    for key in backbone_keys(ds):
        assert torch.equal(ds["init"][key].bfloat16().float(), ds["after_warmup"][key]), key


# --- end to end on the digits recipe ------------------------------------------------------------

def digits_args(tmp_path, name: str, *extra: str) -> list[str]:
    return [DIGITS, f"output_dir={tmp_path / name}", f"data.root={tmp_path / 'digits'}",
            "data.image_size=8", "data.resize_size=8", "train.progress=false",
            "model.freeze_bn=true", "eval.at_start=false", *extra]


def metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_digits_trains_resumes_and_evaluates_like_ddp(tmp_path):
    """ZeRO-2 for one epoch, resumed for a second, against two DDP epochs; then launch/evaluate.py
    reads the checkpoint with DeepSpeed hidden."""
    ddp = run_torchrun(TRAIN, 2, digits_args(tmp_path, "ddp", "train.epochs=2"), timeout=600)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr[-5000:]
    ds_args = ["train.backend=deepspeed", "train.resume=auto",
               f"train.deepspeed_config={os.path.join(ROOT, 'configs', 'deepspeed', 'zero2.yaml')}"]
    first = run_torchrun(TRAIN, 2, digits_args(tmp_path, "ds", "train.epochs=1", *ds_args), timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr[-5000:]
    second = run_torchrun(TRAIN, 2, digits_args(tmp_path, "ds", "train.epochs=2", *ds_args), timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr[-5000:]
    assert f"resumed from {tmp_path / 'ds' / 'last.pt'} after epoch 1" in second.stdout
    assert second.stdout.count("epoch 2:") == 1, "only rank 0 prints"

    ds_rows, ddp_rows = metrics(tmp_path / "ds"), metrics(tmp_path / "ddp")
    assert [r["epoch"] for r in ds_rows] == [1, 2]
    assert abs(ds_rows[-1]["eval/R@1"] - ddp_rows[-1]["eval/R@1"]) <= 0.02
    ds_ckpt = torch.load(tmp_path / "ds" / "last.pt", map_location="cpu", weights_only=True)
    ddp_ckpt = torch.load(tmp_path / "ddp" / "last.pt", map_location="cpu", weights_only=True)
    for part in ("model", "loss"):
        for key, value in ddp_ckpt[part].items():
            torch.testing.assert_close(ds_ckpt[part][key], value, rtol=0, atol=1e-4, msg=key)
    tags = [d for d in os.listdir(tmp_path / "ds" / "last.pt.ds") if os.path.isdir(tmp_path / "ds" / "last.pt.ds" / d)]
    assert tags == [ds_ckpt["deepspeed"]["tag"]], "older tags are removed once the new one is committed"
    shards = sorted(f for f in os.listdir(tmp_path / "ds" / "last.pt.ds" / tags[0]) if "optim_states" in f)
    assert len(shards) == 2, shards

    hidden = tmp_path / "no_deepspeed" / "deepspeed"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('DeepSpeed is hidden in this test')\n")
    env = dict(os.environ, PYTHONPATH=f"{hidden.parent}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    best = tmp_path / "ds" / "best.pt"
    evaluated = subprocess.run([sys.executable, EVALUATE, *digits_args(tmp_path, "ds"), f"checkpoint={best}"],
                               capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    with open(tmp_path / "ds" / "best.eval.json") as f:
        scores = json.load(f)
    best_epoch = ds_ckpt["best"]["epoch"]
    assert scores["metrics"]["R@1"] == pytest.approx(ds_rows[best_epoch - 1]["eval/R@1"], abs=1e-6)


@pytest.mark.slow
def test_zero3_evaluates_and_probes_on_two_ranks(tmp_path):
    """ZeRO-3 with every parameter sharded: each forward is a collective, so evaluation with
    uneven batch counts (448 and 449 images in batches of 7: 64 and 65 forwards) and the
    monitoring probe must run the same forwards on both ranks instead of hanging."""
    path = write_ds(tmp_path, {"zero_optimization": {"stage": 3,
                                                     "stage3_param_persistence_threshold": 0}})
    result = run_torchrun(TRAIN, 2, digits_args(tmp_path, "z3", "train.epochs=1", "eval.batch_size=7",
                                                "monitor.sample_size=32", "train.backend=deepspeed",
                                                f"train.deepspeed_config={path}", "dist.timeout_s=120"),
                          timeout=600, env={"DS_ACCELERATOR": "cpu"})
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    [row] = metrics(tmp_path / "z3")
    assert row["eval/R@1"] > 0.5
    assert list((tmp_path / "z3" / "tensorboard").iterdir()), "rank 0 wrote the probe's histograms"


def test_derived_config_reduces_gradients_in_fp32(tmp_path):
    for stage, accum in ((0, None), (2, "fp32"), (3, "fp32")):
        path = write_ds(tmp_path, {"zero_optimization": {"stage": stage}})
        ds = build_deepspeed_config(run_cfg(f"train.deepspeed_config={path}", "train.amp=bf16"), 2)
        assert ds["communication_data_type"] == "fp32"
        assert ds["data_types"].get("grad_accum_dtype") == accum
    path = write_ds(tmp_path, {"zero_optimization": {"stage": 2}, "communication_data_type": "bf16",
                               "data_types": {"grad_accum_dtype": "bf16"}})
    ds = build_deepspeed_config(run_cfg(f"train.deepspeed_config={path}", "train.amp=bf16"), 2)
    assert ds["communication_data_type"] == "bf16" and ds["data_types"]["grad_accum_dtype"] == "bf16"


def test_pml_proxy_losses_are_refused_under_deepspeed_mixed_precision():
    with pytest.raises(ConfigError, match=r"^loss\.name: proxy_anchor .* train\.amp=bf16"):
        check_training(run_cfg("loss.name=proxy_anchor", "train.amp=bf16"), world_size=2)
    check_training(run_cfg("loss.name=proxy_anchor"), world_size=2)
    check_training(run_cfg("loss.name=multi_similarity", "train.amp=bf16"), world_size=2)
