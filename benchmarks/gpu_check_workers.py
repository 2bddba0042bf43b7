"""The GPU check's two measuring workers (benchmarks/gpu_check.py runs them; each prints its
findings as ``RESULT`` lines).

- ``gloo``: two ranks on one GPU over gloo (torchrun --nproc_per_node=2). With one GPU the
  training steps run a world of one, so this is where CUDA tensors go through the gather with
  gradient (into RCDML's SRC term, which has no parameters) and the watchdog names a stalled
  rank. tests/distributed and tests/losses check the same on the CPU.
- ``throughput``: training images/s per GPU of ResNet-50 through the trainer's own step, eager
  and under ``train.compile``, and the host syncs of a step (:func:`throughput_worker`).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import time
import warnings

import torch
import torch.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(rank: int, rows: int, dim: int, device: torch.device) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(rank)).to(device)


def gloo_worker(args) -> int:
    from rcdml.distributed import all_gather_with_grad, equal_shards
    from rcdml.distributed.watchdog import CollectiveTimeout, collective_timeout, init_watchdog, \
        is_collective_timeout
    from rcdml.losses import RCDMLLoss

    timeout_s = 5.0
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    init_watchdog()
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    rows, dim, classes = 8, 16, 6
    loss_fn = RCDMLLoss(classes, dim).to(device)
    for name, context in (("uneven rows", None), ("equal_shards", rows)):
        sizes = [rows + r if context is None else rows for r in range(world)]
        x = _rows(rank, sizes[rank], dim, device).requires_grad_()
        with equal_shards(context) if context else contextlib.nullcontext():
            gathered = all_gather_with_grad(x)
            gathered.retain_grad()
            # The loss of the gathered batch, as every rank computes it (no second gather).
            labels = torch.arange(sum(sizes), device=device) % classes
            loss = loss_fn._src(gathered, labels, classes)
        loss.backward()
        whole = torch.cat([_rows(r, sizes[r], dim, device) for r in range(world)])
        start = sum(sizes[:rank])
        losses = [torch.empty_like(loss) for _ in range(world)]
        dist.all_gather(losses, loss.detach())
        ok = (torch.equal(gathered.detach(), whole) and all(torch.equal(v, loss) for v in losses)
              and torch.allclose(x.grad, world * gathered.grad[start:start + sizes[rank]]))
        if rank == 0:
            print(f"RESULT gather with gradient on {device} ({name}): values, loss on every rank "
                  f"and summed gradients {'correct' if ok else 'WRONG'}", flush=True)
        if not ok:
            return 1
    # Rank 1 stops answering: rank 0's collective times out and the watchdog names rank 1.
    if rank == 1:
        time.sleep(3 * timeout_s)
        return 0
    try:
        dist.all_reduce(torch.ones(1, device=device))
    except RuntimeError as e:
        assert is_collective_timeout(e), e
        error = collective_timeout(e, timeout_s)
        named = isinstance(error, CollectiveTimeout) and str(error).startswith("rank 1 stopped")
        print(f"RESULT watchdog ({type(e).__name__}): {str(error)[:100]}", flush=True)
        return 0 if named else 1
    print("RESULT watchdog: the collective did not time out", flush=True)
    return 1


def _timed_epoch(trainer, epoch: int, count_syncs: bool = False) -> tuple[float, int]:
    """(seconds, host syncs) of one training epoch; syncs are counted on a GPU only."""
    from loop import rcdml_epoch  # noqa: E402  (benchmarks/loop.py)

    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        if cuda and count_syncs:
            torch.cuda.set_sync_debug_mode("warn")
        rcdml_epoch(trainer, epoch)
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
        took = time.perf_counter() - start
    return took, sum("synchroniz" in str(w.message) for w in caught)



def throughput_worker(args) -> int:
    """ResNet-50 at 224 px, bf16, channels_last, 128 images per step: training images/s of the
    trainer's own step (benchmarks/loop.py's synthetic pipeline: batches already on the GPU, so
    no loader is measured), eager then under ``train.compile``; the eager run also counts the
    host syncs of an epoch under ``torch.cuda.set_sync_debug_mode("warn")``."""
    from loop import CLASSES, PER_CLASS, build_trainer  # noqa: E402  (benchmarks/loop.py)
    from rcdml.config import load_config
    from rcdml.distributed import DistInfo
    from rcdml.models import build_model

    dry = args.dry_run
    size, batch, backbone, steps = (32, 16, "resnet18", 2) if dry else (224, 128, "resnet50", 20)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = DistInfo(0, 1, 0, device, None)
    images = torch.randn(batch, 3, size, size, device=device)
    labels = (torch.arange(batch) // PER_CLASS % CLASSES).to(device)
    for compiled in (False, True):
        mode = "train.compile" if compiled else "eager"
        cfg = load_config(None, [
            f"output_dir={os.path.join(args.work, 'throughput_' + mode)}",
            f"model.backbone={backbone}", f"train.batch_size={batch}",
            f"train.amp={'none' if dry else 'bf16'}", "train.channels_last=true",
            f"train.compile={str(compiled).lower()}",
            # The CPU would spend minutes in inductor's C++ builds: graph capture only.
            f"train.compile_backend={'aot_eager' if dry else 'inductor'}",
            "train.warmup_epochs=0", "train.epochs=3", "train.progress=false",
            "monitor.sample_size=0"])
        torch.manual_seed(0)
        trainer = build_trainer(cfg, info, build_model(cfg.model), images, labels, steps)
        try:
            warm_s, _ = _timed_epoch(trainer, 0)  # cuDNN autotuning, compilation
            took, _ = _timed_epoch(trainer, 1)
            syncs = _timed_epoch(trainer, 2, count_syncs=True)[1] if not compiled else None
        finally:
            trainer.monitor.close()
            trainer.run.release()
        counted = ("" if syncs is None else f", {syncs / steps:.2f} host syncs per step" if
                   device.type == "cuda" else ", syncs not countable on the CPU")
        print(f"RESULT {backbone} {size} px {cfg.train.amp} channels_last {mode}: "
              f"{batch * steps / took:.0f} training images/s per GPU (batch {batch}, {steps} "
              f"steps; first epoch {warm_s:.1f} s){counted}", flush=True)
    return 0
