"""The GPU check's two measuring workers (benchmarks/gpu_check.py runs them; each prints its
findings as ``RESULT`` lines).

- ``gloo``: two ranks on one GPU over gloo (torchrun --nproc_per_node=2). With one GPU the
  training steps run a world of one, so this is where CUDA tensors go through the gather with
  gradient (into RCDML's SRC term, which has no parameters) and the watchdog names a stalled
  rank. tests/distributed and tests/losses check the same on the CPU.
- ``syncs``: the trainer's own training step on the JPEG folder's config, 30 steps after a
  warm-up, under ``torch.cuda.set_sync_debug_mode("warn")``: host syncs and ms per step, eager
  against channels_last.
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


def _count_syncs(trainer, images, labels, steps: int) -> tuple[float, float]:
    """(host syncs per step, ms per step) of ``steps`` training steps."""
    cuda = images.is_cuda
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(steps):
            trainer._train_step(images, labels, 0, step)
    if cuda:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
    ms = (time.perf_counter() - start) * 1000 / steps
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    return syncs / steps, ms


def syncs_worker(args) -> int:
    from rcdml.config import load_config
    from rcdml.distributed import init_distributed
    from rcdml.engine.trainer import Trainer

    dry = args.dry_run
    size, batch, backbone = (32, 16, "resnet18") if dry else (224, 128, "resnet50")
    cfg = load_config(os.path.join(ROOT, "configs", "digits.yaml"), [
        f"output_dir={os.path.join(args.work, 'syncs')}", "data.name=folder",
        f"data.root={os.path.join(args.work, 'jpegs')}", f"model.backbone={backbone}",
        "model.embedding_size=512", f"data.image_size={size}", f"data.resize_size={size}",
        "data.samples_per_class=4", "data.num_workers=0", "data.loader=torch",
        f"train.batch_size={batch}", f"train.amp={'none' if dry else 'bf16'}",
        "train.progress=false", "monitor.sample_size=0", "data.check_images=exists"])
    trainer = Trainer(cfg, init_distributed())
    device = trainer.device
    images = torch.randn(batch, 3, size, size, device=device)
    labels = (torch.arange(batch) // 4).to(device)
    steps = 3 if dry else 30
    trainer.learner.train()
    for layout in ("eager", "channels_last"):
        if layout == "channels_last":
            trainer.model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        _count_syncs(trainer, images, labels, 3)  # warm-up: cuDNN autotuning, allocator
        syncs, ms = _count_syncs(trainer, images, labels, steps)
        counted = f"{syncs:.1f} host syncs" if images.is_cuda else "syncs not countable on the CPU"
        print(f"RESULT {backbone} {layout}, batch {batch} at {size} px: {counted} and {ms:.1f} ms "
              f"per step over {steps} steps", flush=True)
    return 0
