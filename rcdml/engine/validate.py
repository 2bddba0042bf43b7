"""Evaluation during training (torchtitan's ``components/validate.py``): the validator embeds and
ranks the evaluation split (and the held-out validation classes) and returns a
:class:`Validation`, which best-epoch choice, retrieval pictures, diagnostics and the closing
report take as a value; the trainer only decides when to validate."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from rcdml.config import Config
from rcdml.config.typed import to_dict
from rcdml.data import DataPipeline
from rcdml.data.datasets import dataset_spec
from rcdml.distributed import is_main
from rcdml.engine.backends import Backend
from rcdml.eval.embed import amp_dtype
from rcdml.eval.metrics import retrieval_metrics, summarize
from rcdml.eval.ranking import RankStats
from rcdml.eval.retrieval import EvalEmbeddings, embed_eval_data, embed_split, rank, score
from rcdml.losses import GlobalBatchLoss
from rcdml.models import EmbeddingNet
from rcdml.monitor import EmbeddingProbe, RunMonitor, intra_class_similarities, proxy_similarities
from rcdml.monitor.pictures import training_pictures
from rcdml.monitor.summary import read_rows, run_summary, selected_and_last
from rcdml.rundir import RunDir


@dataclass
class Validation:
    """One evaluation: ``eval/`` (and ``val/``) metrics, the evaluation split's embeddings and
    its per-query ranks (kept for the retrieval pictures)."""
    metrics: dict[str, float]
    embeddings: EvalEmbeddings
    stats: RankStats


def selection_key(cfg: Config) -> str:
    """The metric ``best.pt`` is chosen on: R@(first k) of the validation classes when there are
    any, else of the evaluation split (the reference implementation's choice)."""
    split = "val" if cfg.data.val_classes is not None else "eval"
    return f"{split}/R@{cfg.eval.ks[0]}"


def choose_best(best: dict[str, Any], metrics: dict[str, float], key: str,
                epoch: int) -> dict[str, Any] | None:
    """The new best epoch when ``metrics`` of ``epoch`` improve on ``best``, else None."""
    if metrics[key] > best["metric"]:
        return {"metric": metrics[key], "epoch": epoch, "key": key}
    return None


class Validator:
    def __init__(self, cfg: Config, model: EmbeddingNet, loss: GlobalBatchLoss, backend: Backend,
                 pipeline: DataPipeline | None, device: torch.device, run: RunDir,
                 monitor: RunMonitor) -> None:
        self.cfg, self.model, self.loss, self.backend = cfg, model, loss, backend
        self.pipeline, self.device, self.run, self.monitor = pipeline, device, run, monitor
        self.key = selection_key(cfg)
        self.probe = None
        # Under ZeRO-3 every rank runs the probe's forwards (each is a collective); rank 0 logs.
        if ((is_main() or backend.collective_forward) and cfg.monitor.sample_size
                and pipeline is not None):
            self.probe = EmbeddingProbe(pipeline.data.query, pipeline.eval_transform,
                                        cfg.monitor.sample_size, cfg.train.seed)

    def validate(self) -> Validation:
        """``eval/`` metrics of the evaluation split and, with ``data.val_classes``, ``val/``
        metrics of the held-out training classes, scored the same way."""
        cfg, collective = self.cfg.eval, self.backend.collective_forward
        dtype = amp_dtype(cfg.amp, self.device)
        emb = embed_eval_data(self.model, self.pipeline, self.device, dtype, collective)
        stats = rank(emb, cfg)
        results = {f"eval/{name}": v for name, v in summarize(stats, cfg.ks, cfg.map_at_r).items()}
        val = self.pipeline.data.val
        if val is not None:
            queries = EvalEmbeddings(*embed_split(self.model, self.pipeline, val, self.device,
                                                  dtype, collective))
            results.update({f"val/{name}": v for name, v in score(queries, cfg).items()})
        return Validation(results, emb, stats)

    def at_epoch(self, epoch: int, best: dict[str, Any]
                 ) -> tuple[dict[str, float], dict[str, float], dict[str, Any] | None]:
        """Validate after ``epoch`` (0-based): (its metrics, what to log with them: the metrics,
        ``perf/eval_s`` and the diagnostics' timing, the new best epoch or None)."""
        started = time.perf_counter()
        result = self.validate()
        logged = {**result.metrics, "perf/eval_s": time.perf_counter() - started}
        new_best = choose_best(best, result.metrics, self.key, epoch + 1)
        logged.update(self.diagnostics(result, epoch, improved=new_best is not None))
        return result.metrics, logged, new_best

    def diagnostics(self, result: Validation, epoch: int, improved: bool) -> dict[str, float]:
        """Similarity histograms and retrieval pictures every evaluation; the projector at a new
        best epoch. Returns the pictures' wall time (``perf/pictures_s``, rank 0), so a run shows
        what they cost next to ``perf/train_s`` and ``perf/eval_s``."""
        step = (epoch + 1) * self.pipeline.steps_per_epoch
        timing = {}
        if is_main() and self.cfg.monitor.retrieval_queries:
            started = time.perf_counter()
            pictures = training_pictures(result.embeddings, result.stats, self.pipeline.data,
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

    def report(self, final: dict[str, float], best: dict[str, Any], wall_s: float) -> None:
        """The run's closing lines, TensorBoard's hparams and ``summary.json``."""
        cfg = self.cfg
        self.monitor.hparams(_flat_hparams(to_dict(cfg)), final)
        self.monitor.print("final: " + " ".join(f"{k} {v:.4f}" for k, v in final.items())
                           + f" (best {self.key} {best['metric']:.4f} at epoch {best['epoch']})")
        if not is_main():
            return
        rows = read_rows(self.run.metrics)
        self.monitor.print(run_summary(
            rows, final, best, cfg.train.epochs, self.baseline(), wall_s, self.run,
            [p for p in (self.run.last, self.run.best) if os.path.exists(p)]))
        self.run.write_summary(selected_and_last(rows, best, cfg.train.epochs, self.key))

    def baseline(self) -> dict[str, float]:
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
