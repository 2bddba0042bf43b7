"""Run monitoring: the metrics rows, TensorBoard scalars, console lines and the progress bar.

Only rank 0 writes; on other ranks every method is a no-op, so callers never branch on rank.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch

from rcdml.io import atomic_write_text
from rcdml.log import get_logger
from rcdml.rundir import RunDir

log = get_logger(__name__)


class _Silent:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, text: str) -> None: ...
    def close(self) -> None: ...


class RunMonitor:
    def __init__(self, run: RunDir, enabled: bool, progress: bool = True,
                 resume_epoch: int = 0, resume_step: int = 0,
                 resumed_row: dict[str, Any] | None = None) -> None:
        self.enabled = enabled
        self.show_progress = progress and enabled
        self.metrics_path = run.metrics
        self.writer = None
        if not enabled:
            return
        os.makedirs(run.output_dir, exist_ok=True)
        # A fresh start (no checkpoint) keeps no row, not even a stale epoch-0 evaluation.
        self._truncate_metrics(resume_epoch if resume_epoch or resume_step else -1, resumed_row)
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crashed run wrote after its last checkpoint.
        self.writer = SummaryWriter(run.tensorboard,
                                    purge_step=resume_step if resume_step else None)

    def _truncate_metrics(self, resume_epoch: int, resumed_row: dict[str, Any] | None) -> None:
        """Keep exactly the rows of the epochs the resumed checkpoint contains. A line cut short
        by a crash, or rows of epochs after the checkpoint (written before it was lost), are
        dropped with a warning instead of stopping every later resume; the checkpoint's own
        epoch row (``resumed_row``), lost to a crash just after the checkpoint, is restored."""
        kept, partial, newer, epochs = [], 0, 0, set()
        lines: list[str] = []
        if os.path.exists(self.metrics_path):
            with open(self.metrics_path) as f:
                lines = f.readlines()
        for line in lines:
            if not line.strip():
                continue
            try:
                epoch = json.loads(line)["epoch"]
            except (ValueError, KeyError, TypeError):
                partial += 1
                continue
            if epoch <= resume_epoch:
                kept.append(line if line.endswith("\n") else line + "\n")
                epochs.add(epoch)
            else:
                newer += 1
        if partial or newer:
            log.warning(f"warning: {self.metrics_path}: dropped {partial} unreadable line(s) and "
                        f"{newer} row(s) after epoch {resume_epoch}, the resumed checkpoint's position")
        if resumed_row and resumed_row.get("epoch") == resume_epoch and resume_epoch not in epochs:
            log.warning(f"warning: {self.metrics_path}: restored the row of epoch {resume_epoch} "
                        "from the checkpoint (the run stopped before writing it)")
            kept.append(json.dumps(resumed_row) + "\n")
        if lines or kept:
            atomic_write_text(self.metrics_path, "".join(kept))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def histogram(self, tag: str, values, step: int) -> None:
        if self.writer is not None and len(values):
            self.writer.add_histogram(tag, values, step)

    def image(self, tag: str, image, step: int) -> None:
        """A (3, H, W) image in [0, 1]."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step)

    def projector(self, embeddings, labels, thumbnails, step: int) -> None:
        if self.writer is not None:
            self.writer.add_embedding(embeddings, metadata=[int(v) for v in labels],
                                      label_img=thumbnails, global_step=step, tag="eval_sample")

    def hparams(self, hparams: dict[str, Any], results: dict[str, float]) -> None:
        """The run's hyper-parameters next to its final metrics (TensorBoard's HPARAMS tab)."""
        if self.writer is not None:
            self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in results.items()},
                                    run_name="hparams")

    def log_epoch(self, metrics: dict[str, Any], step: int) -> None:
        """One metrics row, the matching TensorBoard scalars and one console line."""
        if not self.enabled:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(metrics) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.scalars({k: v for k, v in metrics.items()
                      if isinstance(v, (int, float)) and k != "epoch"}, step)
        self.writer.flush()
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                         if isinstance(v, float) and not k.startswith("lr/"))
        log.info(f"epoch {metrics['epoch']}: {shown}")

    def progress(self, total: int, desc: str):
        if not self.show_progress:
            return _Silent()
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, file=sys.stderr,
                    disable=None)

    def print(self, text: str) -> None:
        if self.enabled:
            log.info(text)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def epoch_metrics(totals: dict[str, float], images: int, elapsed: float, skipped: int,
                  device: torch.device) -> dict[str, float]:
    """An epoch's ``train/`` means (of ``totals``: loss sums and ``_steps``, their step count)
    and ``perf/`` numbers (``images`` trained on by every rank in ``elapsed`` seconds)."""
    totals = dict(totals)
    denominator = max(totals.pop("_steps", 0.0), 1.0)
    metrics = {f"train/{k}": v / denominator for k, v in totals.items()}
    metrics["perf/images_per_s"] = images / max(elapsed, 1e-9)
    metrics["perf/train_s"] = elapsed
    metrics["train/skipped_steps"] = float(skipped)
    if device.type == "cuda":
        metrics["perf/gpu_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return metrics
