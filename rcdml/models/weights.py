"""Loading pretrained backbone weights from state_dict files (ours, torchvision's, or ports)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

_CLASSIFIER_PREFIXES = ("fc.", "last_linear.", "classifier.")


def adapt_state_dict(checkpoint: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``checkpoint`` made ready for ``model``'s strict ``load_state_dict``:

    * drops classifier weights (``fc.``, ``last_linear.``, ``classifier.``);
    * reshapes tensors whose element count matches but whose shape does not (ports store
      BatchNorm vectors as (1, C));
    * adds ``num_batches_tracked`` (0) where the file predates that buffer.

    Any other disagreement is left for the strict load to report.
    """
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        if key.startswith(_CLASSIFIER_PREFIXES):
            continue
        target = own.get(key)
        if target is not None and value.shape != target.shape and value.numel() == target.numel():
            value = value.reshape(target.shape)
        out[key] = value
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(value)
    return out


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Load the backbone state_dict stored at ``path`` (``weights_only``), strictly.

    Missing or unexpected keys are an error that names them: a silently half-loaded backbone
    would train from a random start without anyone noticing.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = adapt_state_dict(state, backbone)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"model.pretrained={path}: does not fit the backbone; missing keys "
                         f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected keys "
                         f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    backbone.load_state_dict(state)
