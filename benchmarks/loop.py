"""What rcdml's training step costs around the network: the real Trainer step against a bare
PyTorch loop doing the same mathematics, in one run.

    python benchmarks/loop.py                   # CPU: both networks, batches 128 and 1024, 1 and 2 ranks
    python benchmarks/loop.py --device cuda     # one GPU (1 process)
    python benchmarks/loop.py --smoke           # tiny sizes, checks that it works

rcdml: ``Trainer.train_epoch`` (the DDP backend, the default RCDML loss with its all-gather and
checks, gradient clipping, the non-finite check, the preemption flag, logging every
``train.log_every_steps``, the epoch's loss sums) on a synthetic pipeline whose batches already
lie on the device, so no loader is measured, then the schedule's epoch step. Bare: the same
network, loss formula (``batch_loss`` of the gathered batch, without the checks) and optimizer in
a plain forward-backward-step loop (DDP and torch's all-gather with gradient on two ranks).

Networks: ``cheap``, a linear embedding head over pre-computed 1024-d features (the loop's own
cost dominates), and ``real``, ResNet-18 at 64 px. Time per step is the median over rounds that
alternate the two loops (``--steps`` steps each), after a warm-up round. The profile is cProfile's
top entries of rcdml's step (cheap network, first batch, one process), with the host syncs per
step that benchmarks/host_syncs.py counts. The last line is the summary.
"""
from __future__ import annotations

import argparse
import cProfile
import copy
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rcdml.config import load_config  # noqa: E402
from rcdml.distributed import DistInfo, init_distributed  # noqa: E402
from rcdml.engine.backends import build_backend  # noqa: E402
from rcdml.engine.learner import MetricLearner, prepare_network  # noqa: E402
from rcdml.engine.optim import build_optimizer, param_groups  # noqa: E402
from rcdml.engine.components import Components  # noqa: E402
from rcdml.engine.trainer import Trainer  # noqa: E402
from rcdml.eval.embed import amp_dtype  # noqa: E402
from rcdml.losses import build_loss  # noqa: E402
from rcdml.models import EmbeddingNet, build_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = 1024  # the cheap network's input: BN-Inception's pooled feature width
CLASSES = 512  # the loss's classes; 4 samples per class, so batch 1024 holds 256 of them
PER_CLASS = 4


def network(name: str, cfg, size: int) -> tuple[nn.Module, tuple[int, ...]]:
    """(embedding network, shape of one input) for ``cheap`` or ``real``."""
    torch.manual_seed(0)
    if name == "cheap":
        model = EmbeddingNet(nn.Identity(), FEATURES, cfg.model.embedding_size, pooling="avg")
        return model, (FEATURES, 1, 1)
    return build_model(cfg.model), (3, size, size)


class SyntheticPipeline:
    """What ``Trainer.train_epoch`` reads of a DataPipeline: the same batch every step, already
    on the device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
        self.batch = (images, labels)
        self.steps_per_epoch = steps
        self.sampler = SimpleNamespace(rows_per_rank=images.shape[0])

    def train_loader(self, epoch: int, start_step: int) -> list:
        return [self.batch] * (self.steps_per_epoch - start_step)


def build_trainer(cfg, info: DistInfo, model: nn.Module, images: torch.Tensor,
                  labels: torch.Tensor, steps: int) -> Trainer:
    """A Trainer over ``model`` (as :func:`rcdml.engine.trainer.build_components` assembles one)
    whose epochs are ``steps`` steps on the synthetic batch."""
    model = prepare_network(model.to(info.device), cfg.train)
    loss = build_loss(cfg.loss, CLASSES, cfg.model.embedding_size).to(info.device)
    learner = MetricLearner(model, loss, amp_dtype(cfg.train.amp), cfg.train.channels_last)
    optimizer = build_optimizer(param_groups(model, loss, cfg.optim), cfg.optim)
    backend = build_backend(cfg, learner, optimizer, info.device)
    trainer = Trainer(cfg, info, Components(model, loss, learner, optimizer, backend,
                                            SyntheticPipeline(images, labels, steps)))
    trainer.backend.prepare()  # what the first epoch's phase change does in fit()
    return trainer


def rcdml_epoch(trainer: Trainer, epoch: int) -> None:
    trainer.train_epoch(epoch, 0)
    trainer.scheduler.step()


class BareLoop:
    """The same mathematics without rcdml: network, ``batch_loss`` of the gathered batch, the
    optimizer; no checks, clipping, logging or flags."""

    def __init__(self, cfg, model: nn.Module, device: torch.device) -> None:
        self.net = prepare_network(model.to(device), cfg.train).train()
        self.loss = build_loss(cfg.loss, CLASSES, cfg.model.embedding_size).to(device)
        self.optimizer = build_optimizer(param_groups(self.net, self.loss, cfg.optim), cfg.optim)
        self.amp = amp_dtype(cfg.train.amp)
        self.channels_last = cfg.train.channels_last
        self.distributed = dist.is_initialized()
        if self.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[device.index] if device.type == "cuda" else None)

    def steps(self, images: torch.Tensor, labels: torch.Tensor, count: int) -> None:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        for _ in range(count):
            with torch.autocast(images.device.type, dtype=self.amp, enabled=self.amp is not None):
                embeddings = self.net(images)
            x, y = embeddings.float(), labels
            if self.distributed:
                from torch.distributed.nn.functional import all_gather

                x = torch.cat(all_gather(x))
                parts = [torch.empty_like(y) for _ in range(dist.get_world_size())]
                dist.all_gather(parts, y)
                y = torch.cat(parts)
            self.loss.batch_loss(x, y).backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if dist.is_initialized():
        dist.barrier()


def _timed(device: torch.device, run) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def config(args, name: str, batch: int, output_dir: str):
    backbone = ["model.backbone=resnet18"] if name == "real" else []
    amp = args.amp or ("bf16" if args.device == "cuda" else "none")
    return load_config(None, [f"output_dir={output_dir}", *backbone, f"train.batch_size={batch}",
                              f"train.amp={amp}", "train.warmup_epochs=0", "train.progress=false",
                              "monitor.sample_size=0", f"train.epochs={1 + 2 * args.rounds}",
                              *args.overrides])


def measure(args, info: DistInfo, name: str, batch: int, work: str) -> dict:
    """ms per step of rcdml and of the bare loop on this rank's share of ``batch``."""
    world, rank = info.world_size, info.rank
    rows = batch // world
    cfg = config(args, name, batch, os.path.join(work, f"{name}_{batch}_{world}"))
    model, shape = network(name, cfg, args.size)
    bare = BareLoop(cfg, copy.deepcopy(model), info.device)
    generator = torch.Generator().manual_seed(rank)
    images = torch.randn(rows, *shape, generator=generator).to(info.device)
    labels = (torch.arange(rank * rows, (rank + 1) * rows) // PER_CLASS % CLASSES).to(info.device)
    steps = args.steps if name == "cheap" else max(2, args.steps * 128 // max(batch, 128) // 2)
    trainer = build_trainer(cfg, info, model, images, labels, steps)
    try:
        rcdml_epoch(trainer, 0)  # warm-up: allocator, cuDNN, the first logging
        bare.steps(images, labels, steps)
        times = {"rcdml": [], "bare": []}
        for r in range(args.rounds):
            times["rcdml"].append(_timed(info.device, lambda: rcdml_epoch(trainer, 1 + r)))
            times["bare"].append(_timed(info.device, lambda: bare.steps(images, labels, steps)))
        profile = None
        if args.profile and name == "cheap" and world == 1 and batch == args.batches[0]:
            profile = profile_step(trainer, images, labels, steps, 1 + args.rounds)
    finally:
        trainer.monitor.close()
        trainer.run.release()
    ms = {k: 1000 * statistics.median(v) / steps for k, v in times.items()}
    return {"network": name, "batch": batch, "procs": world, "steps": steps, "rounds": args.rounds,
            "rcdml_ms": ms["rcdml"], "bare_ms": ms["bare"], "profile": profile}


def profile_step(trainer: Trainer, images, labels, steps: int, epoch: int) -> dict:
    """cProfile's top entries of ``steps`` rcdml steps, and the host syncs per step."""
    from host_syncs import count_syncs  # noqa: E402  (benchmarks/host_syncs.py)

    profiler = cProfile.Profile()
    profiler.enable()
    rcdml_epoch(trainer, epoch)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    entries = []
    for (path, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():
        where = f"{os.path.relpath(path, ROOT) if path.startswith(ROOT) else os.path.basename(path)}:{line}"
        entries.append((tottime, cumtime, calls, f"{func} ({where})"))
    entries.sort(reverse=True)
    with count_syncs() as syncs:
        trainer.train_epoch(epoch + 1, 0)
    return {"top": [(1000 * t / steps, 1000 * c / steps, n / steps, what)
                    for t, c, n, what in entries[:15]],
            "syncs_per_step": len(syncs.ops) / steps, "sync_ops": syncs.summary(steps)}


def worker(rank: int, args, world: int, work: str, port: int) -> list[dict]:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        info = init_distributed("gloo")
    else:
        info = DistInfo(0, 1, 0, torch.device(args.device), None)
    try:
        rows = [measure(args, info, name, batch, work)
                for name in args.networks for batch in args.batches]
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0:
        with open(os.path.join(work, f"results_{world}.json"), "w") as f:
            json.dump(rows, f)
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table(rows: list[dict]) -> list[str]:
    head = (f"| {'network':<7} | {'batch':>5} | {'procs':>5} | {'steps':>5} | {'rcdml ms':>9} | "
            f"{'bare ms':>9} | {'overhead ms':>11} | {'rcdml / bare':>12} |")
    lines = [head, "|" + "|".join("-" * len(c) for c in head.strip("|").split("|")) + "|"]
    for r in rows:
        lines.append(f"| {r['network']:<7} | {r['batch']:>5} | {r['procs']:>5} | {r['steps']:>5} | "
                     f"{r['rcdml_ms']:9.2f} | {r['bare_ms']:9.2f} | "
                     f"{r['rcdml_ms'] - r['bare_ms']:11.2f} | {r['rcdml_ms'] / r['bare_ms']:12.3f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--networks", nargs="+", choices=["cheap", "real"], default=["cheap", "real"])
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 1024], help="global batches")
    parser.add_argument("--procs", nargs="+", type=int, help="process counts (default: 1 2 on the "
                        "CPU over gloo, 1 on a GPU)")
    parser.add_argument("--size", type=int, default=64, help="the real network's image size")
    parser.add_argument("--steps", type=int, default=20, help="steps per round (cheap network; "
                        "the real one takes fewer at large batches)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, median taken")
    parser.add_argument("--amp", choices=["none", "bf16"], help="default: bf16 on cuda, none on cpu")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("overrides", nargs="*", help="config key=value for both loops")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible")
    if args.smoke:
        args.batches, args.size, args.steps, args.rounds = [16, 32], 32, 2, 1
    procs = args.procs or ([1, 2] if args.device == "cpu" else [1])
    if args.device == "cuda" and max(procs) > 1:
        parser.error("--device cuda: one process (each rank needs its own GPU)")
    print(f"{args.device}, amp {args.amp or ('bf16' if args.device == 'cuda' else 'none')}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="rcdml_loop_") as work:
        for world in procs:
            if world == 1:
                rows += worker(0, args, 1, work, 0)
            else:
                torch.multiprocessing.spawn(worker, args=(args, world, work, _free_port()),
                                            nprocs=world)
                with open(os.path.join(work, f"results_{world}.json")) as f:
                    rows += json.load(f)
            for line in table([r for r in rows if r["procs"] == world]):
                print(line, flush=True)
    print("\n".join(table(rows)))
    profiled = next((r for r in rows if r["profile"]), None)
    if profiled:
        p = profiled["profile"]
        print(f"\nprofile of rcdml's step ({profiled['network']} network, batch {profiled['batch']}, "
              f"1 process; cProfile, top entries by own time, per step):")
        print(f"| {'own ms':>7} | {'total ms':>8} | {'calls':>6} | function |")
        print("|---------|----------|--------|----------|")
        for own, total, calls, what in p["top"]:
            print(f"| {own:7.3f} | {total:8.3f} | {calls:6.1f} | {what} |")
        print(f"host syncs per step: {p['syncs_per_step']:.2f} ({p['sync_ops']})")
    real = next((r for r in rows if r["network"] == "real" and r["procs"] == 1), None)
    cheap = next((r for r in rows if r["network"] == "cheap" and r["procs"] == 1), None)
    if real and cheap:
        print(f"overhead: {100 * (real['rcdml_ms'] / real['bare_ms'] - 1):.1f}% over the bare loop "
              f"(real network, batch {real['batch']}, 1 process); "
              f"{cheap['rcdml_ms'] - cheap['bare_ms']:.2f} ms/step (cheap network)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
