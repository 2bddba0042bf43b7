"""The training loop: epochs of global batches, warm-up, evaluation, checkpoints, monitoring.

A run's position is (epoch, step): ``epoch`` epochs are complete and ``step`` steps of the next
one are done. Checkpoints store that position with everything that determines what follows
(parameters, optimizer, scheduler, every rank's RNG state, the epoch's running loss sums), and
the samplers derive each global batch from (seed, epoch, step), so a resumed run continues
exactly where the checkpoint was taken.

Preemption (:mod:`rcdml.distributed.stop`): SIGTERM, SIGUSR1 and SIGINT only set a flag. Before
the first step and in every step (in the step's one host read) the ranks agree on it with one
all-reduce, so all of them stop after the same step, write ``last.pt`` at that position (unless
it already holds it) and raise :class:`Preempted`.
"""
from __future__ import annotations

import signal
import time
from typing import Any

import torch

from rcdml.config import Config
from rcdml.distributed import (DistInfo, elastic_restart, equal_shards, is_distributed, is_main,
                               stop, sum_over_ranks)
from rcdml.distributed.watchdog import collective_timeout, is_collective_timeout
from rcdml.engine.checkpoint import CheckpointManager, TrainState, merge_totals
from rcdml.engine.components import Components, build_components
from rcdml.engine.optim import build_scheduler
from rcdml.engine.rng import seed_everything
from rcdml.engine.validate import Validator
from rcdml.losses import NonFiniteEmbeddings
from rcdml.log import get_logger
from rcdml.monitor.run import RunMonitor, epoch_metrics
from rcdml.rundir import RunDir

log = get_logger(__name__)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf and ``train.on_nonfinite`` is ``stop``."""


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
        self.loss.defer_checks = True  # read with the step's one host read (_train_step)
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
                                  resume_step=self.start_epoch * steps + self.start_step,
                                  resumed_row=self.state.row)
        self.validator = Validator(cfg, self.model, self.loss, self.backend, self.pipeline,
                                   self.device, self.run, self.monitor)
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

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int, step: int,
                    read_loss: bool) -> tuple[torch.Tensor | None, float | None, int]:
        """One optimizer step, skipped (by ``train.on_nonfinite``) when the batch's embeddings or
        its loss are not finite: (the detached loss, or None when skipped; the loss read on the
        host if ``read_loss``; the stop signal the ranks agreed on, 0 for none)."""
        # A trainer built from components without a pipeline knows nothing of its batches' rows.
        rows = self.pipeline.sampler.rows_per_rank if self.pipeline is not None else None
        with equal_shards(rows):
            loss = self.backend(images, labels)
        self.backend.backward(loss)
        loss = loss.detach()
        # The step's one host read, once the backward pass is queued (so the GPU stays busy):
        # the batch's value checks, whether the loss is finite, the loss itself on logging
        # steps, and the ranks' stop flag in the same all-reduce. Every rank reads the same.
        read = [loss.isfinite().logical_not(), *self.loss.checks] + ([loss] if read_loss else [])
        signum, values = stop.read_agreed(torch.stack([v.double() for v in read]))
        try:
            self.loss.raise_for(values[1:4])
            problem = None
            if values[0]:
                terms = " ".join(f"{k}={float(v):.4g}" for k, v in self.loss.terms.items())
                problem = f"non-finite loss {float(loss)} ({terms})"
        except NonFiniteEmbeddings as e:
            problem = str(e)
        self.backend.step(skip=problem is not None)
        if problem is not None:
            self._nonfinite(epoch, step, problem)
            return None, None, signum
        return loss, values[4] if read_loss else None, signum

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
            loss, logged, signum = self._train_step(
                images, labels, epoch, step, read_loss=(step + 1) % cfg.log_every_steps == 0)
            if loss is None:
                skipped += 1
            else:
                for name, value in {"loss": loss, **self.loss.terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach().float()
                counted += 1
            images_seen += images.shape[0]
            bar.update()
            global_step = epoch * steps + step + 1
            if logged is not None:
                bar.set_postfix_str(f"loss {logged:.4f}")
                self.monitor.scalars({"step/loss": logged}, global_step)
            # A stop after the epoch's last step waits for the epoch's end (and its checkpoint).
            if (signum or self.checkpoints.due(global_step)) and step + 1 < steps:
                totals, sums, counted = merge_totals(totals, sums, counted), {}, 0
                self._save(epoch, step + 1, totals, improved=False)
                if signum:
                    raise Preempted(signum, epoch, step + 1, self.checkpoints.last_good)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        bar.close()
        seen = sum_over_ranks(images_seen, self.device)
        return epoch_metrics(merge_totals(totals, sums, counted), seen, elapsed, skipped, self.device)

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
            self.backend.close()
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
            result = self.validator.validate()
            self.monitor.log_epoch({"epoch": 0, **result.metrics}, step=0)
            self.validator.diagnostics(result, -1, improved=False)
        if self.start_epoch >= cfg.train.epochs:
            self.monitor.print(f"nothing to train: the checkpoint already holds {self.start_epoch} "
                               f"epochs (train.epochs={cfg.train.epochs})")
            final = self.validator.validate().metrics
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
                final, logged, best = self.validator.at_epoch(epoch, self.state.best)
                metrics.update(logged)
                if best is not None:
                    self.state.best, improved = best, True
            # The checkpoint carries the epoch's row: a resume restores it if a crash came first.
            self._save(epoch + 1, 0, {}, improved, row=metrics)
            self.monitor.log_epoch(metrics, step=(epoch + 1) * steps)
            if epoch + 1 < cfg.train.epochs:
                self._stop_at(epoch + 1, 0)
        self.validator.report(final, self.state.best, time.perf_counter() - started)
        return final

    def _save(self, epoch: int, step: int, totals: dict[str, float], improved: bool,
              row: dict[str, Any] | None = None) -> None:
        self.state.epoch, self.state.step, self.state.epoch_totals = epoch, step, totals
        self.state.row = row or {}
        self.checkpoints.save(self.state, self.scheduler, improved)

