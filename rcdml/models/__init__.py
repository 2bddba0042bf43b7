"""Embedding networks: backbones by name (one file per family) with a pooled linear head."""
from rcdml.models import bn_inception as _bn_inception  # noqa: F401  (registers bn_inception)
from rcdml.models import conv4 as _conv4  # noqa: F401  (registers conv4)
from rcdml.models import googlenet as _googlenet  # noqa: F401  (registers googlenet)
from rcdml.models import resnet as _resnet  # noqa: F401  (registers resnet18/50/101)
from rcdml.models import timm_backbones as _timm  # noqa: F401  (registers timm:<name>)
from rcdml.models.embedding import EmbeddingNet, build_model
from rcdml.models.weights import adapt_state_dict, load_pretrained
from rcdml.models.inputs import Normalization, Normalize
from rcdml.models.registry import (backbone_names, backbone_spec, input_normalization,
                                   register_backbone)

__all__ = ["EmbeddingNet", "Normalization", "Normalize", "adapt_state_dict", "backbone_names",
           "backbone_spec", "build_model", "input_normalization", "load_pretrained",
           "register_backbone"]
