"""The training loop: epochs of global batches, warm-up, evaluation, checkpoints, monitoring."""
from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np
import torch

from rcdml.config import Config, dump_config
from rcdml.config.typed import to_dict
from rcdml.data import build_pipeline
from rcdml.distributed import DistInfo, all_gather_object, is_main
from rcdml.engine.backends import build_backend
from rcdml.engine.checkpoint import atomic_write_text
from rcdml.engine.learner import MetricLearner, amp_dtype
from rcdml.engine.optim import build_optimizer, build_scheduler, param_groups
from rcdml.eval.retrieval import evaluate_retrieval
from rcdml.losses import build_loss
from rcdml.models import build_model
from rcdml.monitor import RunMonitor

def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:
        torch.backends.cudnn.benchmark = True


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Trainer:
    def __init__(self, cfg: Config, dist: DistInfo) -> None:
        self.cfg = cfg
        self.dist = dist
        self.device = dist.device
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        self.model = build_model(cfg.model).to(self.device)
        self.pipeline = build_pipeline(cfg, dist, self.model_input_style())
        self.loss = build_loss(cfg.loss, self.pipeline.num_train_classes,
                               cfg.model.embedding_size).to(self.device)
        self.learner = MetricLearner(self.model, self.loss, amp_dtype(cfg.train.amp))
        self.optimizer = build_optimizer(param_groups(self.model, self.loss, cfg.optim), cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.epochs)
        self.backend = build_backend(cfg, self.learner, self.optimizer, self.device)
        self.start_epoch = 0
        self.best: dict[str, Any] = {"metric": -1.0, "epoch": -1}
        self._load_resume_checkpoint()
        steps = self.pipeline.steps_per_epoch
        self.monitor = RunMonitor(cfg.output_dir, is_main(), cfg.train.progress,
                                  resume_epoch=self.start_epoch, resume_step=self.start_epoch * steps)
        if is_main():
            atomic_write_text(os.path.join(cfg.output_dir, "config.yaml"), dump_config(cfg))

    def model_input_style(self) -> str:
        from rcdml.models import backbone_spec

        return backbone_spec(self.cfg.model.backbone).input_style

    @property
    def last_path(self) -> str:
        return os.path.join(self.cfg.output_dir, "last.pt")

    def _load_resume_checkpoint(self) -> None:
        resume = self.cfg.train.resume
        if resume == "none":
            return
        path = self.last_path if resume == "auto" else resume
        if not os.path.exists(path):
            return
        ckpt = self.backend.load(path)
        saved_model = ckpt["config"]["model"]
        for key in ("backbone", "embedding_size"):
            if saved_model[key] != getattr(self.cfg.model, key):
                raise ValueError(f"train.resume: {path} was trained with model.{key}="
                                 f"{saved_model[key]}, this run has {getattr(self.cfg.model, key)}")
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.start_epoch = ckpt["epoch"]
        self.best = ckpt["best"]
        rng = ckpt["rng"]
        if len(rng) == self.dist.world_size:
            _set_rng_state(rng[self.dist.rank])
        if is_main():
            print(f"resumed from {path} after epoch {self.start_epoch}", flush=True)

    def _checkpoint(self, epoch: int, improved: bool) -> None:
        state = {"scheduler": self.scheduler.state_dict(), "epoch": epoch, "best": self.best,
                 "rng": all_gather_object(_rng_state()), "config": to_dict(self.cfg)}
        self.backend.save(self.last_path, state)
        if improved:
            self.backend.save(os.path.join(self.cfg.output_dir, "best.pt"), state)

    def _set_phase(self, epoch: int, current: bool | None) -> bool:
        """Warm-up epochs train only the head and the loss's parameters."""
        warm = epoch < self.cfg.train.warmup_epochs
        if warm != current:
            self.model.set_backbone_trainable(not warm)
            self.backend.prepare()
        return warm

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.learner.train()
        loader = self.pipeline.train_loader(epoch)
        bar = self.monitor.progress(len(loader), f"epoch {epoch + 1}/{self.cfg.train.epochs}")
        totals: dict[str, torch.Tensor] = {}
        steps = images_seen = 0
        start = time.perf_counter()
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            loss = self.backend(images, labels)
            self.backend.backward(loss)
            self.backend.step()
            for name, value in {"loss": loss.detach(), **self.loss.terms}.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float()
            steps += 1
            images_seen += images.shape[0]
            bar.update()
            if steps % 10 == 0:
                bar.set_postfix_str(f"loss {loss.item():.4f}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        bar.close()
        global_images = sum(all_gather_object(images_seen))
        metrics = {f"train/{k}": float(v) / max(steps, 1) for k, v in totals.items()}
        metrics["perf/images_per_s"] = global_images / max(elapsed, 1e-9)
        if self.device.type == "cuda":
            metrics["perf/gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return metrics

    def evaluate(self) -> dict[str, float]:
        results = evaluate_retrieval(self.model, self.pipeline, self.device, self.cfg.eval,
                                     amp_dtype(self.cfg.train.amp, self.device))
        return {f"eval/{name}": v for name, v in results.items()}

    def fit(self) -> dict[str, float]:
        cfg = self.cfg
        steps = self.pipeline.steps_per_epoch
        phase = None
        final: dict[str, float] = {}
        if self.start_epoch >= cfg.train.epochs:
            self.monitor.print(f"nothing to train: {self.last_path} already holds "
                               f"{self.start_epoch} epochs (train.epochs={cfg.train.epochs})")
            final = self.evaluate()
        for epoch in range(self.start_epoch, cfg.train.epochs):
            phase = self._set_phase(epoch, phase)
            metrics: dict[str, Any] = {"epoch": epoch + 1}
            metrics.update({f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups})
            metrics.update(self.train_epoch(epoch))
            self.scheduler.step()
            improved = False
            if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == cfg.train.epochs:
                final = self.evaluate()
                metrics.update(final)
                key = f"eval/R@{cfg.eval.ks[0]}"
                if final[key] > self.best["metric"]:
                    self.best = {"metric": final[key], "epoch": epoch + 1}
                    improved = True
            self._checkpoint(epoch + 1, improved)
            self.monitor.log_epoch(metrics, step=(epoch + 1) * steps)
        self.monitor.print("final: " + " ".join(f"{k} {v:.4f}" for k, v in final.items())
                           + f" (best R@{cfg.eval.ks[0]} {self.best['metric']:.4f} at epoch "
                           f"{self.best['epoch']})")
        self.monitor.close()
        return final
