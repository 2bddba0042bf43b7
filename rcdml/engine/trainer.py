"""The training loop: epochs of global batches, warm-up, evaluation, checkpoints, monitoring.

A run's position is (epoch, step): ``epoch`` epochs are complete and ``step`` steps of the next
one are done. Checkpoints store that position with everything that determines what follows
(parameters, optimizer, scheduler, every rank's RNG state, the epoch's running loss sums), and
the samplers derive each global batch from (seed, epoch, step), so a resumed run continues
exactly where the checkpoint was taken.
"""
from __future__ import annotations

import os
import pickle
import time
import zipfile
from typing import Any

import torch

from rcdml.config import Config, ConfigError, dump_config
from rcdml.config.typed import to_dict
from rcdml.data import build_pipeline
from rcdml.distributed import DistInfo, all_gather_object, barrier, is_distributed, is_main
from rcdml.distributed.watchdog import collective_timeout, is_collective_timeout
from rcdml.engine.backends import build_backend
from rcdml.engine.checkpoint import atomic_write_text, rotate
from rcdml.engine.diagnostics import EmbeddingProbe, intra_class_similarities, proxy_similarities
from rcdml.engine.learner import MetricLearner, amp_dtype
from rcdml.engine.optim import build_optimizer, build_scheduler, param_groups
from rcdml.engine.rng import rng_state, seed_everything, set_rng_state
from rcdml.deploy.pictures import training_pictures
from rcdml.eval.metrics import rank_stats, summarize
from rcdml.eval.retrieval import embed_eval_data
from rcdml.losses import NonFiniteEmbeddings, build_loss
from rcdml.models import backbone_spec, build_model
from rcdml.monitor import RunMonitor

_UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf and ``train.on_nonfinite`` is ``stop``."""


class Trainer:
    def __init__(self, cfg: Config, dist: DistInfo) -> None:
        self.cfg = cfg
        self.dist = dist
        self.device = dist.device
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        self.model = build_model(cfg.model).to(self.device)
        input_style = backbone_spec(cfg.model.backbone).input_style
        self.pipeline = build_pipeline(cfg, dist, input_style)
        self.loss = build_loss(cfg.loss, self.pipeline.num_train_classes,
                               cfg.model.embedding_size).to(self.device)
        self.learner = MetricLearner(self.model, self.loss, amp_dtype(cfg.train.amp))
        self.optimizer = build_optimizer(param_groups(self.model, self.loss, cfg.optim), cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.epochs)
        self.backend = build_backend(cfg, self.learner, self.optimizer, self.device)
        self.start_epoch = self.start_step = 0
        self.resumed_totals: dict[str, float] = {}
        self.best: dict[str, Any] = {"metric": -1.0, "epoch": -1}
        self.last_good: str | None = None
        self._resume()
        steps = self.pipeline.steps_per_epoch
        self.monitor = RunMonitor(cfg.output_dir, is_main(), cfg.train.progress,
                                  resume_epoch=self.start_epoch,
                                  resume_step=self.start_epoch * steps + self.start_step)
        self.probe = None
        if is_main() and cfg.monitor.sample_size:
            self.probe = EmbeddingProbe(self.pipeline.data.query, self.pipeline.eval_transform,
                                        cfg.monitor.sample_size, cfg.train.seed)
        if is_main():
            atomic_write_text(os.path.join(cfg.output_dir, "config.yaml"), dump_config(cfg))

    # -- checkpoints -------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.cfg.output_dir, name)

    def _resume_candidates(self) -> list[str]:
        resume = self.cfg.train.resume
        # A worker restarted by torchrun's --max-restarts resumes by itself.
        if resume == "auto" or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0:
            return [self._path("last.pt"), self._path("prev.pt")]
        return [] if resume == "none" else [resume]

    def _resume(self) -> None:
        """Continue from the first readable candidate. A file that cannot be read (e.g. cut
        short) falls back to the next; a readable one from another model is an error, and so is
        finding checkpoints of which none can be read: starting over would overwrite them."""
        unreadable = []
        for path in self._resume_candidates():
            if not os.path.exists(path):
                continue
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["config"]
            except _UNREADABLE as e:
                unreadable.append(f"{path} ({type(e).__name__}: {e})")
                if is_main():
                    print(f"warning: cannot read checkpoint {unreadable[-1]}; trying the previous one",
                          flush=True)
                continue
            for key in ("backbone", "embedding_size"):
                if saved["model"][key] != getattr(self.cfg.model, key):
                    raise ConfigError(f"train.resume: {path} was trained with model.{key}="
                                     f"{saved['model'][key]}, this run has "
                                     f"{getattr(self.cfg.model, key)}")
            self._restore(path, self.backend.load(path))
            return
        if unreadable:
            raise RuntimeError("train.resume: no readable checkpoint: " + "; ".join(unreadable))

    def _restore(self, path: str, ckpt: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.start_epoch, self.start_step = ckpt["epoch"], ckpt["step"]
        self.resumed_totals = ckpt["epoch_totals"]
        self.best = ckpt["best"]
        if len(ckpt["rng"]) == self.dist.world_size:
            set_rng_state(ckpt["rng"][self.dist.rank])
        self.last_good = path
        if is_main():
            where = f"epoch {self.start_epoch}" + (f" + {self.start_step} steps" if self.start_step else "")
            print(f"resumed from {path} after {where}", flush=True)

    def _checkpoint(self, epoch: int, step: int, totals: dict[str, float], improved: bool) -> None:
        """Save position (epoch, step); the previous last.pt becomes prev.pt first."""
        state = {"scheduler": self.scheduler.state_dict(), "epoch": epoch, "step": step,
                 "epoch_totals": totals, "best": self.best, "rng": all_gather_object(rng_state()),
                 "config": to_dict(self.cfg)}
        last = self._path("last.pt")
        if is_main():
            rotate(self.backend.artifacts(last), self.backend.artifacts(self._path("prev.pt")))
        barrier()
        self.backend.save(last, state)
        self.last_good = last
        if improved:
            self.backend.save(self._path("best.pt"), state)

    # -- training ----------------------------------------------------------------------------

    def _set_phase(self, epoch: int, current: bool | None) -> bool:
        """Warm-up epochs train only the head and the loss's parameters."""
        warm = epoch < self.cfg.train.warmup_epochs
        if warm != current:
            self.model.set_backbone_trainable(not warm)
            self.backend.prepare()
        return warm

    def _nonfinite(self, epoch: int, step: int, what: str) -> None:
        where = f"epoch {epoch + 1} step {step + 1}"
        if self.cfg.train.on_nonfinite == "stop":
            raise NonFiniteLoss(f"{what} at {where}; last good "
                                f"checkpoint: {self.last_good or 'none'}; set "
                                "train.on_nonfinite=skip to drop such steps instead")
        self.monitor.print(f"warning: {what} at {where}; step skipped")

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int,
                    step: int) -> torch.Tensor | None:
        """One optimizer step; the detached loss, or None when the step was not finite (and
        skipped, by ``train.on_nonfinite``)."""
        try:
            loss = self.backend(images, labels)
        except NonFiniteEmbeddings as e:
            # Raised after the loss's all-gather, so every rank skips (or stops) together.
            self._nonfinite(epoch, step, str(e))
            return None
        finite = bool(torch.isfinite(loss.detach()))
        self.backend.backward(loss)
        self.backend.step(skip=not finite)
        if not finite:
            terms = " ".join(f"{k}={float(v):.4g}" for k, v in self.loss.terms.items())
            self._nonfinite(epoch, step, f"non-finite loss {float(loss)} ({terms})")
            return None
        return loss.detach()

    def train_epoch(self, epoch: int, start_step: int) -> dict[str, float]:
        cfg = self.cfg.train
        steps = self.pipeline.steps_per_epoch
        self.learner.train()
        loader = self.pipeline.train_loader(epoch, start_step)
        bar = self.monitor.progress(len(loader), f"epoch {epoch + 1}/{cfg.epochs}")
        totals = dict(self.resumed_totals) if start_step else {}
        self.resumed_totals = {}
        sums: dict[str, torch.Tensor] = {}
        counted = images_seen = skipped = 0
        start = time.perf_counter()
        for step, (images, labels) in enumerate(loader, start=start_step):
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            loss = self._train_step(images, labels, epoch, step)
            if loss is None:
                skipped += 1
            else:
                for name, value in {"loss": loss, **self.loss.terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach().float()
                counted += 1
            images_seen += images.shape[0]
            bar.update()
            global_step = epoch * steps + step + 1
            if (step + 1) % cfg.log_every_steps == 0 and loss is not None:
                value = float(loss)
                bar.set_postfix_str(f"loss {value:.4f}")
                self.monitor.scalars({"step/loss": value}, global_step)
            if (cfg.checkpoint_every_steps and global_step % cfg.checkpoint_every_steps == 0
                    and step + 1 < steps):
                totals, sums, counted = _merge(totals, sums, counted), {}, 0
                self._checkpoint(epoch, step + 1, totals, improved=False)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        bar.close()
        totals = _merge(totals, sums, counted)
        denominator = max(totals.pop("_steps", 0.0), 1.0)
        metrics = {f"train/{k}": v / denominator for k, v in totals.items()}
        metrics["perf/images_per_s"] = sum(all_gather_object(images_seen)) / max(elapsed, 1e-9)
        metrics["train/skipped_steps"] = float(skipped)
        if self.device.type == "cuda":
            metrics["perf/gpu_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return metrics

    def evaluate(self) -> dict[str, float]:
        # Embeddings and per-query ranks are kept for the retrieval pictures.
        cfg = self.cfg.eval
        emb = self.eval_embeddings = embed_eval_data(self.model, self.pipeline, self.device,
                                                     amp_dtype(self.cfg.train.amp, self.device))
        self.eval_stats = rank_stats(emb.query, emb.query_labels, emb.gallery, emb.gallery_labels,
                                     with_map=cfg.map_at_r, chunk_size=cfg.chunk_size,
                                     distributed=is_distributed())
        results = summarize(self.eval_stats, cfg.ks, cfg.map_at_r)
        return {f"eval/{name}": v for name, v in results.items()}

    def _diagnostics(self, epoch: int, improved: bool) -> None:
        """Similarity histograms and retrieval pictures every evaluation; the projector at a new
        best epoch."""
        step = (epoch + 1) * self.pipeline.steps_per_epoch
        if is_main() and self.cfg.monitor.retrieval_queries:
            pictures = training_pictures(self.eval_embeddings, self.eval_stats, self.pipeline.data,
                                         self.cfg.monitor.retrieval_queries, self.cfg.train.seed,
                                         self.cfg.output_dir, epoch + 1)
            for tag, image in pictures.items():
                self.monitor.image(tag, image, step)
        if self.probe is None:
            return
        embeddings = self.probe.embed(self.model, self.device)
        self.monitor.histogram("similarity/intra_class",
                               intra_class_similarities(embeddings, self.probe.labels), step)
        proxies = getattr(self.loss, "proxies", None)
        if isinstance(proxies, torch.Tensor):
            self.monitor.histogram("similarity/proxy_proxy", proxy_similarities(proxies), step)
        if improved and self.cfg.monitor.projector:
            self.monitor.projector(embeddings, self.probe.labels, self.probe.thumbnails(), step)

    def fit(self) -> dict[str, float]:
        try:
            return self._fit()
        except RuntimeError as e:
            if is_distributed() and is_collective_timeout(e) and not isinstance(e, NonFiniteLoss):
                raise collective_timeout(e, self.cfg.dist.timeout_s) from e
            raise
        finally:
            self.monitor.close()

    def _fit(self) -> dict[str, float]:
        cfg = self.cfg
        steps = self.pipeline.steps_per_epoch
        phase = None
        final: dict[str, float] = {}
        if self.start_epoch >= cfg.train.epochs:
            self.monitor.print(f"nothing to train: the checkpoint already holds {self.start_epoch} "
                               f"epochs (train.epochs={cfg.train.epochs})")
            final = self.evaluate()
        for epoch in range(self.start_epoch, cfg.train.epochs):
            start_step = self.start_step if epoch == self.start_epoch else 0
            phase = self._set_phase(epoch, phase)
            metrics: dict[str, Any] = {"epoch": epoch + 1}
            metrics.update({f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups})
            metrics.update(self.train_epoch(epoch, start_step))
            self.scheduler.step()
            improved = False
            if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == cfg.train.epochs:
                final = self.evaluate()
                metrics.update(final)
                key = f"eval/R@{cfg.eval.ks[0]}"
                if final[key] > self.best["metric"]:
                    self.best = {"metric": final[key], "epoch": epoch + 1}
                    improved = True
                self._diagnostics(epoch, improved)
            self._checkpoint(epoch + 1, 0, {}, improved)
            self.monitor.log_epoch(metrics, step=(epoch + 1) * steps)
        self.monitor.hparams(_flat_hparams(to_dict(cfg)), final)
        self.monitor.print("final: " + " ".join(f"{k} {v:.4f}" for k, v in final.items())
                           + f" (best R@{cfg.eval.ks[0]} {self.best['metric']:.4f} at epoch "
                           f"{self.best['epoch']})")
        return final


def _merge(totals: dict[str, float], sums: dict[str, torch.Tensor], counted: int) -> dict[str, float]:
    """Host-side running loss sums of the epoch (one sync), with the step count as ``_steps``."""
    merged = dict(totals)
    for name, value in sums.items():
        merged[name] = merged.get(name, 0.0) + float(value)
    merged["_steps"] = merged.get("_steps", 0.0) + counted
    return merged


def _flat_hparams(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"section.key": scalar} with lists shown as strings (TensorBoard hparams
    take scalars only)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_hparams(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
