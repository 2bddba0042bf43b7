"""BatchNorm over the global batch: under several ranks, a training BatchNorm normalises with the
mean and variance of every rank's samples, as one process on the concatenated batch would, and
its gradient flows through those statistics to every rank's inputs.

torch's ``nn.SyncBatchNorm`` does this for GPU inputs only (it refuses CPU tensors), and the
CPU/gloo runs (CI, tests) must train exactly like the GPU ones, so this one is written with the
differentiable all-reduce of ``torch.distributed.nn``: two all-reduces per layer and forward (the
mean, then the centred sum of squares: the same two-pass arithmetic as ``F.batch_norm``, not
E[x^2] - E[x]^2, which cancels badly)."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

from rcdml.distributed.env import is_distributed


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``nn.BatchNorm1d/2d/3d`` with the statistics of the global batch in training mode; in
    eval mode, or in a single process, exactly the plain layer. Same parameters, buffers and
    state_dict keys as the layer it replaces."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input (batch, channels, ...), got {input.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = torch.cat([x.sum(dims, dtype=torch.float32),
                           x.new_full((1,), x.numel() // x.shape[1], dtype=torch.float32)])
        total = all_reduce(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = x - mean.view(shape).to(x.dtype)
        var = all_reduce((centred.float() ** 2).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape).to(x.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (self.momentum if self.momentum is not None
                            else 1.0 / float(self.num_batches_tracked))
                # Running variance is unbiased, as F.batch_norm keeps it.
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out


def training_batchnorms(module: nn.Module) -> list[str]:
    """Names of the BatchNorm layers that learn from batch statistics in ``module.train()``
    (frozen ones stay in eval mode there)."""
    was_training = module.training
    module.train()
    try:
        return [name for name, m in module.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    finally:
        module.train(was_training)


def to_global_batchnorm(module: nn.Module) -> int:
    """Replace, in place, every BatchNorm of ``module`` that trains by a :class:`GlobalBatchNorm`
    holding the same parameter and buffer tensors (the optimizer's references stay valid).
    Returns how many were replaced."""
    names = set(training_batchnorms(module))
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name)
        old = getattr(parent, child)
        new = GlobalBatchNorm(old.num_features, old.eps, old.momentum, old.affine,
                              old.track_running_stats)
        new.weight, new.bias = old.weight, old.bias
        if old.track_running_stats:
            new.running_mean, new.running_var = old.running_mean, old.running_var
            new.num_batches_tracked = old.num_batches_tracked
        new.train(old.training)
        setattr(parent, child, new)
    return len(names)
