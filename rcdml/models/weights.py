"""Loading pretrained weights from files: torchvision's state_dicts (ResNet-18/50/101,
GoogLeNet), the Cadene BN-Inception port, a timm model's state_dict (its classifier left out),
DINO's checkpoints (the released ``dino_*_pretrain.pth`` backbones, or a training checkpoint's
``teacher``), a plain backbone state_dict, or an rcdml checkpoint (``last.pt``/``best.pt``: its
backbone, and its embedding head when the sizes match), which is how a trained model is
fine-tuned on a new dataset."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from rcdml.config import ConfigError
from rcdml.checkpoint_file import read_file
from rcdml.models.resnet import TORCHVISION_NAMES

# Classifiers, and GoogLeNet's auxiliary classifiers, which the trunk does not have.
_CLASSIFIER_PREFIXES = ("fc.", "last_linear.", "classifier.", "aux1.", "aux2.")


def adapt_state_dict(checkpoint: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``checkpoint`` made ready for ``model``'s strict ``load_state_dict``:

    * drops classifier weights that ``model`` lacks (``fc.``, ``last_linear.``, ``classifier.``,
      ``aux1/2.``, and a timm model's own classifier, e.g. a ViT's ``head.``);
    * renames torchvision ResNet keys (``conv1.*``, ``layer1.*``) to the trunk's numbered
      children (``0.*``, ``4.*``) when ``model`` is such a trunk;
    * reshapes tensors whose element count matches but whose shape does not (ports store
      BatchNorm vectors as (1, C));
    * adds ``num_batches_tracked`` (0) where the file predates that buffer.

    Any other disagreement is left for the strict load to report.
    """
    own = model.state_dict()
    classifiers = _CLASSIFIER_PREFIXES + _timm_classifiers(model)
    numbered = {name: str(i) for i, name in enumerate(TORCHVISION_NAMES)}
    out: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        if key.startswith(classifiers) and key not in own:
            continue
        head, _, rest = key.partition(".")
        if key not in own and head in numbered and f"{numbered[head]}.{rest}" in own:
            key = f"{numbered[head]}.{rest}"
        target = own.get(key)
        if target is not None and value.shape != target.shape and value.numel() == target.numel():
            value = value.reshape(target.shape)
        out[key] = value
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(value)
    return out


def _timm_classifiers(model: nn.Module) -> tuple[str, ...]:
    """The key prefixes of a timm model's classifier (its pretrained config names them)."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return tuple(f"{n}." for n in ((names,) if isinstance(names, str) else names))


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], path: str, part: str) -> None:
    """Missing or unexpected keys are an error that names them: a silently half-loaded backbone
    would train from a random start without anyone noticing."""
    state = adapt_state_dict(state, module)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        def some(keys):
            return f"{keys[:5]}{' ...' if len(keys) > 5 else ''}"
        raise ConfigError(f"model.pretrained: {path} does not fit the {part}; missing keys "
                          f"{some(missing)}, unexpected keys {some(unexpected)}, other shapes "
                          f"{some(shapes)}")
    module.load_state_dict(state)


def _state_dict(obj, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and isinstance(obj.get("teacher"), dict):
        # A DINO training checkpoint: the teacher is the network DINO evaluates and releases.
        obj = obj["teacher"]
    if isinstance(obj, dict) and obj and all(str(k).startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}  # saved from a DDP wrapper
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"model.pretrained: {path} is not a state_dict (a mapping of names to "
                          "tensors) nor an rcdml checkpoint")
    return obj


def load_pretrained(model: nn.Module, path: str) -> str:
    """Load ``path`` into ``model`` (an EmbeddingNet: ``backbone`` and ``head``); returns one line
    saying what was loaded."""
    obj = read_file(path, key="model.pretrained")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # an rcdml checkpoint: the EmbeddingNet's state_dict
    state = _state_dict(obj, path)
    if not any(k.startswith("backbone.") for k in state):
        _load_strict(model.backbone, state, path, "backbone")
        return f"model.pretrained: loaded the backbone from {path}"
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    _load_strict(model.backbone, backbone, path, "backbone")
    # The embedding head with the pooling's parameters (GeM's exponent), all or nothing.
    parts = ("head.", "pool.")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(parts)}
    head = {k: v for k, v in state.items() if k.startswith(parts)}
    if head.keys() == own.keys() and all(head[k].shape == own[k].shape for k in own):
        model.load_state_dict({**model.state_dict(), **head})
        return f"model.pretrained: loaded the backbone and the embedding head from {path}"
    return (f"model.pretrained: loaded the backbone from {path}; its head (if any) does not fit "
            "the embedding head, so the head starts from a fresh initialisation")
