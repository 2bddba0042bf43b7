"""The training loop: epochs of global batches, warm-up, evaluation, checkpoints, monitoring.

A run's position is (epoch, step): ``epoch`` epochs are complete and ``step`` steps of the next
one are done. Checkpoints store that position with everything that determines what follows
(parameters, optimizer, scheduler, every rank's RNG state, the epoch's running loss sums), and
the samplers derive each global batch from (seed, epoch, step), so a resumed run continues
exactly where the checkpoint was taken.

Preemption (:mod:`rcdml.distributed.stop`): SIGTERM, SIGUSR1 and SIGINT only set a flag. Before
the first step and after every step the ranks agree on it with one all-reduce, so all of them
stop after the same step, write ``last.pt`` at that position (unless it already holds it) and
raise :class:`Preempted`.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import torch

from rcdml.config import Config
from rcdml.config.typed import to_dict
from rcdml.data import DataPipeline, build_pipeline
from rcdml.data.datasets import dataset_spec
from rcdml.distributed import (DistInfo, all_gather_object, elastic_restart, equal_shards,
                               is_distributed, is_main, stop)
from rcdml.distributed.watchdog import collective_timeout, is_collective_timeout
from rcdml.engine.backends import Backend, build_backend
from rcdml.engine.checkpoint import CheckpointManager, TrainState
from rcdml.engine.learner import MetricLearner, prepare_network
from rcdml.engine.optim import build_optimizer, build_scheduler, param_groups
from rcdml.engine.rng import seed_everything
from rcdml.eval.embed import amp_dtype
from rcdml.eval.metrics import retrieval_metrics, summarize
from rcdml.eval.retrieval import EvalEmbeddings, embed_eval_data, embed_split, rank, score
from rcdml.losses import GlobalBatchLoss, NonFiniteEmbeddings, build_loss
from rcdml.models import EmbeddingNet, build_model, input_style
from rcdml.log import get_logger
from rcdml.monitor import (EmbeddingProbe, RunMonitor, intra_class_similarities,
                           proxy_similarities)
from rcdml.monitor.pictures import training_pictures
from rcdml.monitor.summary import read_rows, run_summary, selected_and_last
from rcdml.rundir import RunDir

log = get_logger(__name__)



class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf and ``train.on_nonfinite`` is ``stop``."""


@dataclass
class Components:
    """What a :class:`Trainer` trains and with what. :func:`build_components` makes them from a
    config; a test may build its own (without ``pipeline``, the trainer only takes the steps it is
    given batches for). The schedule is not a component: the trainer derives it from
    ``cfg.optim`` and the resume point."""
    model: EmbeddingNet
    loss: GlobalBatchLoss
    learner: MetricLearner
    optimizer: torch.optim.Optimizer
    backend: Backend
    pipeline: DataPipeline | None = None


def build_components(cfg: Config, dist: DistInfo) -> Components:
    model = prepare_network(build_model(cfg.model).to(dist.device), cfg.train)
    pipeline = build_pipeline(cfg, dist, input_style(cfg.model))
    loss = build_loss(cfg.loss, pipeline.num_train_classes, cfg.model.embedding_size).to(dist.device)
    learner = MetricLearner(model, loss, amp_dtype(cfg.train.amp), cfg.train.channels_last)
    optimizer = build_optimizer(param_groups(model, loss, cfg.optim), cfg.optim)
    backend = build_backend(cfg, learner, optimizer, dist.device)
    return Components(model, loss, learner, optimizer, backend, pipeline)


class Preempted(Exception):
    """A stop signal arrived; every rank stopped after the same step and ``last.pt`` holds it."""

    def __init__(self, signum: int, epoch: int, step: int, path: str | None) -> None:
        self.signum, self.epoch, self.step, self.path = signum, epoch, step, path
        held = (f"{path} holds that position" if path else "no checkpoint yet, a new start "
                "loses nothing")
        super().__init__(f"stopped by {signal.Signals(signum).name} at epoch {epoch + 1} step {step}; "
                         f"{held}; continue with train.resume=auto")


class Trainer:
    def __init__(self, cfg: Config, dist: DistInfo, components: Components | None = None) -> None:
        self.cfg = cfg
        self.dist = dist
        self.device = dist.device
        # First, before any data or model work: own the run directory.
        self.run = RunDir(cfg.output_dir)
        for line in self.run.open_new_run(cfg.train.resume, cfg.train.overwrite, elastic_restart()):
            log.info(line)
        try:
            self._build(components)
        except BaseException:
            self.run.release()
            raise

    def _build(self, components: Components | None) -> None:
        cfg, dist = self.cfg, self.dist
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        parts = components if components is not None else build_components(cfg, dist)
        self.model, self.loss, self.learner = parts.model, parts.loss, parts.learner
        self.optimizer, self.backend, self.pipeline = parts.optimizer, parts.backend, parts.pipeline
        self.checkpoints = CheckpointManager(self.run, self.backend, cfg, dist)
        self.state = TrainState()
        changes = self.checkpoints.resume(self.state, elastic_restart(), say=log.info)
        for key, old, new in changes:
            log.info(f"resume: {key} {old} -> {new} from epoch {self.state.epoch + 1}")
        self.start_epoch, self.start_step = self.state.epoch, self.state.step
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.epochs, self.start_epoch)
        steps = self.pipeline.steps_per_epoch if self.pipeline is not None else 0
        self.monitor = RunMonitor(self.run, is_main(), cfg.train.progress,
                                  resume_epoch=self.start_epoch,
                                  resume_step=self.start_epoch * steps + self.start_step)
        self.probe = None
        # Under ZeRO-3 every rank runs the probe's forwards (each is a collective); rank 0 logs.
        if ((is_main() or self.backend.collective_forward) and cfg.monitor.sample_size
                and self.pipeline is not None):
            self.probe = EmbeddingProbe(self.pipeline.data.query, self.pipeline.eval_transform,
                                        cfg.monitor.sample_size, cfg.train.seed)
        if is_main():
            self.run.record_config(cfg, self.start_epoch, self.start_step, changes)

    # -- preemption --------------------------------------------------------------------------

    def _stop_at(self, epoch: int, step: int) -> None:
        """Raise :class:`Preempted` if any rank was asked to stop; every rank calls this at the
        same position, which the newest checkpoint (if any) already holds."""
        signum = stop.agreed(self.device)
        if signum:
            raise Preempted(signum, epoch, step, self.checkpoints.last_good)

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
                                f"checkpoint: {self.checkpoints.last_good or 'none'}; set "
                                "train.on_nonfinite=skip to drop such steps instead")
        self.monitor.print(f"warning: {what} at {where}; step skipped")

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int,
                    step: int) -> torch.Tensor | None:
        """One optimizer step; the detached loss, or None when the step was not finite (and
        skipped, by ``train.on_nonfinite``)."""
        # A trainer built from components without a pipeline knows nothing of its batches' rows.
        rows = self.pipeline.sampler.rows_per_rank if self.pipeline is not None else None
        try:
            with equal_shards(rows):
                loss = self.backend(images, labels)
        except NonFiniteEmbeddings as e:
            # Raised after the loss's all-gather, so every rank skips (or stops) together.
            self._nonfinite(epoch, step, str(e))
            return None
        finite = torch.isfinite(loss.detach())
        self.backend.backward(loss)
        # Read only once the backward pass is queued: the step's one host sync then leaves the
        # GPU busy instead of draining its queue before the backward.
        finite = bool(finite)
        self.backend.step(skip=not finite)
        if not finite:
            terms = " ".join(f"{k}={float(v):.4g}" for k, v in self.loss.terms.items())
            self._nonfinite(epoch, step, f"non-finite loss {float(loss.detach())} ({terms})")
            return None
        return loss.detach()

    def train_epoch(self, epoch: int, start_step: int) -> dict[str, float]:
        cfg = self.cfg.train
        steps = self.pipeline.steps_per_epoch
        self.learner.train()
        loader = self.pipeline.train_loader(epoch, start_step)
        bar = self.monitor.progress(len(loader), f"epoch {epoch + 1}/{cfg.epochs}")
        totals = dict(self.state.epoch_totals) if start_step else {}
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
            signum = stop.agreed(self.device)
            # A stop after the epoch's last step waits for the epoch's end (and its checkpoint).
            if (signum or self.checkpoints.due(global_step)) and step + 1 < steps:
                totals, sums, counted = _merge(totals, sums, counted), {}, 0
                self._save(epoch, step + 1, totals, improved=False)
                if signum:
                    raise Preempted(signum, epoch, step + 1, self.checkpoints.last_good)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        bar.close()
        totals = _merge(totals, sums, counted)
        denominator = max(totals.pop("_steps", 0.0), 1.0)
        metrics = {f"train/{k}": v / denominator for k, v in totals.items()}
        metrics["perf/images_per_s"] = sum(all_gather_object(images_seen)) / max(elapsed, 1e-9)
        metrics["perf/train_s"] = elapsed
        metrics["train/skipped_steps"] = float(skipped)
        if self.device.type == "cuda":
            metrics["perf/gpu_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return metrics

    def evaluate(self) -> dict[str, float]:
        """``eval/`` metrics of the evaluation split and, with ``data.val_classes``, ``val/``
        metrics of the held-out training classes, scored the same way."""
        # Embeddings and per-query ranks are kept for the retrieval pictures.
        cfg = self.cfg.eval
        dtype = amp_dtype(cfg.amp, self.device)
        emb = self.eval_embeddings = embed_eval_data(self.model, self.pipeline, self.device, dtype,
                                                     self.backend.collective_forward)
        self.eval_stats = rank(emb, cfg)
        results = {f"eval/{name}": v
                   for name, v in summarize(self.eval_stats, cfg.ks, cfg.map_at_r).items()}
        val = self.pipeline.data.val
        if val is not None:
            queries = EvalEmbeddings(*embed_split(self.model, self.pipeline, val, self.device,
                                                  dtype, self.backend.collective_forward))
            results.update({f"val/{name}": v for name, v in score(queries, cfg).items()})
        return results

    @property
    def selection_key(self) -> str:
        """The metric ``best.pt`` is chosen on: R@(first k) of the validation classes when there
        are any, else of the evaluation split (the reference implementation's choice)."""
        split = "val" if self.cfg.data.val_classes is not None else "eval"
        return f"{split}/R@{self.cfg.eval.ks[0]}"

    def _diagnostics(self, epoch: int, improved: bool) -> dict[str, float]:
        """Similarity histograms and retrieval pictures every evaluation; the projector at a new
        best epoch. Returns the pictures' wall time (``perf/pictures_s``, rank 0), so a run shows
        what they cost next to ``perf/train_s`` and ``perf/eval_s``."""
        step = (epoch + 1) * self.pipeline.steps_per_epoch
        timing = {}
        if is_main() and self.cfg.monitor.retrieval_queries:
            started = time.perf_counter()
            pictures = training_pictures(self.eval_embeddings, self.eval_stats, self.pipeline.data,
                                         self.cfg.monitor.retrieval_queries, self.cfg.train.seed,
                                         self.run.retrieval_pictures(epoch + 1))
            for tag, image in pictures.items():
                self.monitor.image(tag, image, step)
            timing["perf/pictures_s"] = time.perf_counter() - started
        if self.probe is None:
            return timing
        embeddings = self.probe.embed(self.model, self.device)
        self.monitor.histogram("similarity/intra_class",
                               intra_class_similarities(embeddings, self.probe.labels), step)
        if self.loss.proxies is not None:
            with self.backend.full_parameters([self.loss.proxies]):
                similarities = proxy_similarities(self.loss.proxies)
            self.monitor.histogram("similarity/proxy_proxy", similarities, step)
        if improved and self.cfg.monitor.projector:
            self.monitor.projector(embeddings, self.probe.labels, self.probe.thumbnails(), step)
        return timing

    def fit(self) -> dict[str, float]:
        # rcdml-train installed the handlers already; a library caller gets them for the fit.
        handlers = stop.install()
        try:
            return self._fit()
        except RuntimeError as e:
            if is_distributed() and is_collective_timeout(e) and not isinstance(e, NonFiniteLoss):
                raise collective_timeout(e, self.cfg.dist.timeout_s) from e
            raise
        finally:
            stop.restore(handlers)
            self.monitor.close()
            self.run.release()

    def _fit(self) -> dict[str, float]:
        cfg = self.cfg
        steps = self.pipeline.steps_per_epoch
        phase = None
        final: dict[str, float] = {}
        started = time.perf_counter()
        if cfg.eval.at_start and self.start_epoch == 0 and self.start_step == 0:
            # The untrained network, so every curve starts where training did (a resumed run
            # logged it already).
            self.monitor.log_epoch({"epoch": 0, **self.evaluate()}, step=0)
            self._diagnostics(-1, improved=False)
        if self.start_epoch >= cfg.train.epochs:
            self.monitor.print(f"nothing to train: the checkpoint already holds {self.start_epoch} "
                               f"epochs (train.epochs={cfg.train.epochs})")
            final = self.evaluate()
        # A stop requested while the run was starting (data checks, model build).
        self._stop_at(self.start_epoch, self.start_step)
        for epoch in range(self.start_epoch, cfg.train.epochs):
            start_step = self.start_step if epoch == self.start_epoch else 0
            phase = self._set_phase(epoch, phase)
            metrics: dict[str, Any] = {"epoch": epoch + 1}
            metrics.update({f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups})
            metrics.update(self.train_epoch(epoch, start_step))
            self.scheduler.step()
            improved = False
            if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == cfg.train.epochs:
                evaluated = time.perf_counter()
                final = self.evaluate()
                metrics.update(final)
                metrics["perf/eval_s"] = time.perf_counter() - evaluated
                key = self.selection_key
                if final[key] > self.state.best["metric"]:
                    self.state.best = {"metric": final[key], "epoch": epoch + 1, "key": key}
                    improved = True
                metrics.update(self._diagnostics(epoch, improved))
            # The row first: a resume from the previous checkpoint drops it and logs the epoch
            # again, while a row written after the checkpoint would be lost to a crash between.
            self.monitor.log_epoch(metrics, step=(epoch + 1) * steps)
            self._save(epoch + 1, 0, {}, improved)
            if epoch + 1 < cfg.train.epochs:
                self._stop_at(epoch + 1, 0)
        self.monitor.hparams(_flat_hparams(to_dict(cfg)), final)
        self.monitor.print("final: " + " ".join(f"{k} {v:.4f}" for k, v in final.items())
                           + f" (best {self.selection_key} {self.state.best['metric']:.4f} at "
                           f"epoch {self.state.best['epoch']})")
        if is_main():
            rows = read_rows(self.monitor.metrics_path)
            self.monitor.print(run_summary(
                rows, final, self.state.best, cfg.train.epochs, self._baseline(),
                time.perf_counter() - started, self.run,
                [p for p in (self.run.last, self.run.best) if os.path.exists(p)]))
            self.run.write_summary(selected_and_last(rows, self.state.best, cfg.train.epochs,
                                                     self.selection_key))
        return final

    def _save(self, epoch: int, step: int, totals: dict[str, float], improved: bool) -> None:
        self.state.epoch, self.state.step, self.state.epoch_totals = epoch, step, totals
        self.checkpoints.save(self.state, self.scheduler, improved)

    def _baseline(self) -> dict[str, float]:
        """Cosine retrieval on the dataset's recorded raw features, which describe its default
        evaluation split only."""
        read = dataset_spec(self.cfg.data.name).baseline
        if read is None or self.cfg.data.eval_classes is not None:
            return {}
        found = read(self.cfg.data.root)
        if found is None:
            return {}
        features, labels = found
        return retrieval_metrics(torch.from_numpy(features), torch.from_numpy(labels),
                                 self.cfg.eval.ks, with_map=self.cfg.eval.map_at_r)


def _merge(totals: dict[str, float], sums: dict[str, torch.Tensor], counted: int) -> dict[str, float]:
    """Host-side running loss sums of the epoch (one sync), with the step count as ``_steps``."""
    merged = dict(totals)
    values = torch.stack(list(sums.values())).tolist() if sums else []
    for name, value in zip(sums, values):
        merged[name] = merged.get(name, 0.0) + value
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
