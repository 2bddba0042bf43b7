"""torchrun worker for tests/engine/test_deepspeed_backend.py.

``dist_worker_deepspeed.py OUT_DIR RUN [RUN ...]``, each RUN ``backend:zero_stage:amp``
(``ddp:-:none``, ``deepspeed:2:bf16``). For every RUN, in this one process: a fresh tiny embedding
network + RCDML loss from the same seed, a warm-up step with the backbone frozen, two more steps
(the per-epoch scheduler halves the learning rates before the last), then for DeepSpeed a
checkpoint, one more step, and the same step again from the checkpoint loaded into a fresh backend
built from another seed. Rank 0 writes OUT_DIR/<RUN>.pt with the losses and parameters; every
rank writes its proxies to OUT_DIR/<RUN>.proxies<rank>.pt.
"""
from __future__ import annotations

import os
import sys

import torch
import yaml
from torch import nn

from rcdml.checkpoint_file import read_checkpoint, write_checkpoint
from rcdml.config.schema import Config, LossConfig, OptimConfig
from rcdml.distributed import DistInfo, barrier, get_rank, get_world_size, init_distributed, shutdown
from rcdml.engine.backends import build_backend
from rcdml.engine.learner import MetricLearner
from rcdml.engine.optim import build_optimizer, param_groups
from rcdml.engine.components import Components
from rcdml.engine.trainer import Trainer
from rcdml.losses import build_loss
from rcdml.models.embedding import EmbeddingNet

CLASSES, EMBED, BATCH, CLIP = 6, 16, 8, 0.02
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's slice of global batch ``step``: 4 classes x 2 images of 3x8x8."""
    g = torch.Generator().manual_seed(100 + step)
    images = torch.randn(BATCH, 3, 8, 8, generator=g)
    labels = torch.randperm(CLASSES, generator=g)[:4].repeat_interleave(2)
    per_rank = BATCH // get_world_size()
    rows = slice(get_rank() * per_rank, (get_rank() + 1) * per_rank)
    return images[rows], labels[rows]


def ds_config_file(stage: int, workdir: str) -> str:
    """The shipped configs/deepspeed/zero<stage>.yaml; for ZeRO-3 with every parameter sharded
    (the shipped file keeps parameters this small whole on every rank)."""
    shipped = os.path.join(ROOT, "configs", "deepspeed", f"zero{stage}.yaml")
    if stage < 3:
        return shipped
    with open(shipped) as f:
        config = yaml.safe_load(f)
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    path = os.path.join(workdir, f"zero3_sharded.rank{get_rank()}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def build(run: str, seed: int, workdir: str, info: DistInfo) -> Trainer:
    """A Trainer of the tiny network, from components (no dataset: the steps get their batches
    from :func:`batch`), with one warm-up epoch."""
    backend_name, stage, amp = run.split(":")
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3))
    model = EmbeddingNet(backbone, 8, EMBED, pooling="avg+max", freeze_bn=True)
    loss = build_loss(LossConfig(), CLASSES, EMBED)
    learner = MetricLearner(model, loss).train()
    cfg = Config()
    cfg.optim = OptimConfig(lr=1e-2, weight_decay=0.1, loss_lr_mult=10.0, step_size=1, gamma=0.5)
    optimizer = build_optimizer(param_groups(model, loss, cfg.optim), cfg.optim)
    cfg.train.backend = backend_name
    cfg.train.batch_size = BATCH
    cfg.train.grad_clip_value = CLIP
    cfg.train.amp = amp
    cfg.train.warmup_epochs = 1
    cfg.train.progress = False
    cfg.monitor.sample_size = 0
    cfg.output_dir = os.path.join(workdir, f"{run.replace(':', '_')}.seed{seed}")
    if backend_name == "deepspeed":
        cfg.train.deepspeed_config = ds_config_file(int(stage), workdir)
    backend = build_backend(cfg, learner, optimizer, torch.device("cpu"))
    return Trainer(cfg, info, Components(model, loss, learner, optimizer, backend))


def train_step(trainer: Trainer, epoch: int, step: int) -> torch.Tensor:
    """The trainer's own optimizer step on this rank's slice of global batch ``step``."""
    loss, _, _ = trainer._train_step(*batch(step), epoch, step, read_loss=False)
    return loss


def params(learner: nn.Module) -> dict[str, torch.Tensor]:
    """Full parameters; ZeRO-3 shards them, DeepSpeed's GatheredParameters reassembles them."""
    import contextlib

    everything = list(learner.parameters())
    gathered = contextlib.nullcontext()
    if any(hasattr(p, "ds_id") for p in everything):
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(everything)
    with gathered:
        return {k: v.detach().float().clone() for k, v in learner.named_parameters()}


def max_abs_grad_seen(optimizer) -> list[float]:
    """Records the largest gradient value the optimizer steps with (after clipping)."""
    seen: list[float] = []

    def hook(opt, args, kwargs):
        grads = [p.grad.abs().max() for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.stack(grads).max()))
    optimizer.register_step_pre_hook(hook)
    return seen


def run_one(run: str, out_dir: str, info: DistInfo) -> None:
    trainer = build(run, 0, out_dir, info)
    learner, backend, scheduler = trainer.learner, trainer.backend, trainer.scheduler
    seen = max_abs_grad_seen(backend.optimizer) if run.startswith("ddp") else []
    result: dict = {"init": params(learner)}
    phase = trainer._set_phase(0, None)
    losses = [train_step(trainer, 0, 0)]
    result["after_warmup"] = params(learner)
    phase = trainer._set_phase(1, phase)
    losses.append(train_step(trainer, 1, 1))
    scheduler.step()
    losses.append(train_step(trainer, 1, 2))
    result["losses"] = [float(loss) for loss in losses]
    result["loss_dtype"] = str(losses[0].dtype)
    result["proxies_dtype"] = str(learner.loss.proxies.dtype)
    result["final"] = params(learner)
    result["lrs"] = [g["lr"] for g in backend.optimizer.param_groups]
    result["max_abs_grad"] = seen
    name = run.replace(":", "_")
    torch.save(result["final"]["loss.proxies"], os.path.join(out_dir, f"{name}.proxies{get_rank()}.pt"))
    if run.startswith("deepspeed"):
        path = os.path.join(out_dir, f"{name}.ckpt.pt")
        # What CheckpointManager.save and .resume do with the backend's part of a checkpoint.
        saved = backend.save_state(path)
        if get_rank() == 0:
            write_checkpoint({"epoch": 3, "scheduler": scheduler.state_dict(), **saved}, path)
            backend.after_save(path, saved)
        barrier()
        train_step(trainer, 1, 3)
        result["continued"] = params(learner)
        trainer2 = build(run, 1, out_dir, info)
        state = read_checkpoint(path)
        trainer2.backend.load_state(path, state)
        trainer2.scheduler.load_state_dict(state["scheduler"])
        result["resumed_state"] = {k: v for k, v in state.items()
                                   if k not in ("scheduler", "model", "loss", "deepspeed")}
        result["resumed_lrs"] = [g["lr"] for g in trainer2.backend.optimizer.param_groups]
        trainer2._set_phase(1, None)
        train_step(trainer2, 1, 3)
        result["resumed"] = params(trainer2.learner)
        trainer2.backend.close()
    # What Trainer.fit does at its end, so that shutdown() ends the process groups' threads.
    trainer.backend.close()
    if get_rank() == 0:
        torch.save(result, os.path.join(out_dir, f"{name}.pt"))


def main() -> None:
    out_dir, runs = sys.argv[1], sys.argv[2:]
    info = init_distributed("gloo")
    try:
        for run in runs:
            run_one(run, out_dir, info)
    finally:
        shutdown()


if __name__ == "__main__":
    main()
