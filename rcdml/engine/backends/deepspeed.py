"""DeepSpeed backend: ZeRO stages 0-3 with the run's own torch optimizer, bf16/fp16, and DeepSpeed's
own sharded checkpoints next to a consolidated file that evaluation reads without DeepSpeed."""
from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import torch
from torch import nn

from rcdml.distributed import broadcast_object, init_deepspeed_alone, get_world_size, is_distributed, is_main
from rcdml.engine.backends.base import Backend


class DeepSpeedBackend(Backend):
    """The trainer's optimizer is DeepSpeed's client optimizer.

    - Param groups: ZeRO (and DeepSpeed's mixed-precision wrappers) replace each group's params by
      fp32 master copies (a flat partition per rank under ZeRO) but keep the group dicts, so the
      groups backbone/head/loss keep their lr multipliers and the trainer's per-epoch scheduler
      keeps setting the learning rates DeepSpeed steps with.
    - Gradients are averaged over ranks (all-reduce or reduce-scatter, by ZeRO stage), as
      under DDP, so the global-batch loss gives the update of one process on the whole batch.
    - ``train.grad_clip_value`` and frozen groups are handled in a step pre-hook on that optimizer.
      The gradients it sees are the averaged, unscaled fp32 gradients of this rank's partition;
      value clipping is elementwise, so it is exact whatever the partitioning.
    - Warm-up: ZeRO fixes the set of trained parameters when the engine is built and gives a
      parameter without gradient a zero gradient, which AdamW's weight decay (or SGD's) would still
      move. The engine is therefore built with every optimizer parameter trainable, and a group
      whose parameters are all frozen (the backbone during warm-up) has its gradient dropped
      before the step: the optimizer leaves it and its state untouched, as torch does under DDP.
      Freezing also skips the backbone's backward pass (its hooks simply do not fire).
    - Mixed precision: DeepSpeed casts the module, proxies included, to bf16/fp16 and keeps fp32
      master weights in the optimizer. The loss upcasts embeddings and proxies and runs in fp32;
      the proxies' forward values are the bf16/fp16 copies of their fp32 masters.
    """

    def __init__(self, learner: nn.Module, optimizer: torch.optim.Optimizer, config: dict[str, Any],
                 grad_clip_value: float | None = None) -> None:
        self.learner = learner
        self.optimizer = optimizer
        self.config = config
        self.grad_clip_value = grad_clip_value
        self.engine = None
        self._skip = False
        # The model parameters of each group, recorded before DeepSpeed swaps in master copies.
        self._group_params = {g["name"]: list(g["params"]) for g in optimizer.param_groups}
        optimizer.register_step_pre_hook(self._before_optimizer_step)
        # DeepSpeed casts the module to bf16/fp16, not its inputs.
        learner.model.register_forward_pre_hook(_cast_inputs_to_module_dtype)

    def _engine(self):
        if self.engine is None:
            import deepspeed

            deepspeed.utils.logger.setLevel(logging.WARNING)
            if not is_distributed():
                init_deepspeed_alone()
            params = [p for group in self._group_params.values() for p in group]
            trainable = [p.requires_grad for p in params]
            for p in params:
                p.requires_grad_(True)
            try:
                self.engine, *_ = deepspeed.initialize(model=self.learner, optimizer=self.optimizer,
                                                       config=self.config)
            finally:
                for p, flag in zip(params, trainable):
                    p.requires_grad_(flag)
        return self.engine

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            frozen = self._skip or not any(p.requires_grad for p in self._group_params[group["name"]])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if frozen:
                    p.grad = None
                elif self.grad_clip_value is not None:
                    p.grad.clamp_(-self.grad_clip_value, self.grad_clip_value)

    def prepare(self) -> None:
        self._engine()
        for name, params in self._group_params.items():
            if len({p.requires_grad for p in params}) > 1:
                raise RuntimeError(f"DeepSpeed backend: param group {name!r} is partly frozen; ZeRO "
                                   "steps whole groups, so freeze all of a group or none of it")

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._engine()(images, labels)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self, skip: bool = False) -> None:
        # A skipped step still goes through engine.step(), which keeps DeepSpeed's bookkeeping;
        # the pre-hook drops every gradient, so the optimizer changes nothing.
        self._skip = skip
        try:
            self.engine.step()
        finally:
            self._skip = False

    @property
    def collective_forward(self) -> bool:
        stage = int((self.config.get("zero_optimization") or {}).get("stage", 0))
        return stage == 3 and get_world_size() > 1

    def full_parameters(self, params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(params))

    def close(self) -> None:
        # The engine's gradient hooks live on the parameters (in C++), so a cycle through them
        # outlives the collector and keeps the engine's process groups until interpreter exit;
        # DeepSpeed's own teardown removes them.
        if self.engine is not None:
            self.engine.destroy()
            self.engine = None

    def artifacts(self, path: str) -> list[str]:
        return [path, _shard_folder(path)]

    def save_state(self, path: str) -> dict[str, Any]:
        """DeepSpeed's checkpoint (one optimizer shard per rank under ZeRO) goes to a fresh tag in
        ``<path>.ds/``; the file ``path`` gets the fp32 network and proxies and the tag. ``path``
        is the commit point: a crash before it is written leaves the previous ``path`` and the
        tag it names intact."""
        engine = self._engine()
        folder = _shard_folder(path)
        tag = broadcast_object(_fresh_tag(folder, engine.global_steps) if is_main() else None)
        engine.save_checkpoint(folder, tag=tag, save_latest=False)
        masters = _unfused_master_weights(engine.optimizer)
        trained = {"model": _fp32_state_dict(self.learner.model, masters),
                   "loss": _fp32_state_dict(self.learner.loss, masters)}
        meta = {"tag": tag, "world_size": get_world_size(),
                "zero_stage": int(engine.zero_optimization_stage())}
        return {**trained, "deepspeed": meta}

    def after_save(self, path: str, saved: dict[str, Any]) -> None:
        folder, tag = _shard_folder(path), saved["deepspeed"]["tag"]
        for old in os.listdir(folder):
            if old != tag and os.path.isdir(os.path.join(folder, old)):
                shutil.rmtree(os.path.join(folder, old))

    def load_state(self, path: str, ckpt: dict[str, Any]) -> None:
        meta = ckpt.get("deepspeed")
        if meta is None:
            raise ValueError(f"train.resume: {path} holds no DeepSpeed state (written by "
                             "train.backend=ddp); resume it with train.backend=ddp")
        if meta["zero_stage"] > 0 and meta["world_size"] != get_world_size():
            raise ValueError(f"train.resume: {path} holds ZeRO-{meta['zero_stage']} optimizer shards "
                             f"of {meta['world_size']} ranks; resume it on {meta['world_size']} ranks, "
                             f"not {get_world_size()}")
        folder = _shard_folder(path)
        if not os.path.isdir(os.path.join(folder, meta["tag"])):
            raise ValueError(f"train.resume: {path} refers to the DeepSpeed checkpoint "
                             f"{os.path.join(folder, meta['tag'])}, which is missing")
        loaded, _ = self._engine().load_checkpoint(folder, tag=meta["tag"], load_optimizer_states=True,
                                                   load_lr_scheduler_states=False)
        if loaded is None:
            raise ValueError(f"train.resume: DeepSpeed could not load {folder}/{meta['tag']}")


def _shard_folder(path: str) -> str:
    """DeepSpeed's sharded checkpoint of the consolidated file ``path``; it moves with ``path``
    when the trainer rotates last.pt to prev.pt."""
    return path + ".ds"


def _cast_inputs_to_module_dtype(module: nn.Module, args: tuple) -> tuple:
    dtype = next(module.parameters()).dtype
    return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _fresh_tag(folder: str, global_steps: int) -> str:
    tag, n = f"global_step{global_steps}", 1
    while os.path.exists(os.path.join(folder, tag)):
        tag, n = f"global_step{global_steps}-{n}", n + 1
    return tag


def _unfused_master_weights(optimizer) -> dict[torch.Tensor, torch.Tensor]:
    """fp32 masters of DeepSpeed's ZeRO-0 bf16/fp16 wrapper (torch optimizers get the unfused one),
    the only wrapper that does not expose them through ``safe_get_full_fp32_param``."""
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    if not isinstance(optimizer, FP16_UnfusedOptimizer):
        return {}
    return {p: m for low, high in zip(optimizer.fp16_groups, optimizer.fp32_groups)
            for p, m in zip(low, high)}


def _fp32_state_dict(module: nn.Module, masters: dict[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` on CPU with every trained parameter replaced by its full fp32 master
    weight. Collective under ZeRO (masters, and under ZeRO-3 the parameters themselves, are
    sharded): every rank calls it."""
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    with deepspeed.zero.GatheredParameters(list(module.parameters())):
        state = module.state_dict()
        for name, p in module.named_parameters():
            full = safe_get_full_fp32_param(p)
            state[name] = full if full is not None else masters.get(p, p)
        return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().clone()
                for k, v in state.items()}
