"""BN-Inception (Inception v2 with batch normalisation; Ioffe & Szegedy, 2015) as a feature-map
backbone: the network of the Proxy-Anchor and RCDML papers.

The trunk maps BGR images in [0, 255] minus the mean (104, 117, 128) (registry input style
``bn_inception``; the data pipeline does that normalisation) to the 1024-channel output of
``inception_5b``: (N, 3, 224, 224) -> (N, 1024, 7, 7). Global pooling and the classifier are left
to the embedding head.

Parameter names are those of the widely used ImageNet checkpoint ``bn_inception-52deb4733.pth``
(a port of the Caffe model in Cadene's ``pretrainedmodels``): every convolution and its
BatchNorm sit directly on the root module under the Caffe layer name, e.g.
``inception_4e_double_3x3_2`` and ``inception_4e_double_3x3_2_bn``. So that checkpoint, minus its
``last_linear.*`` classifier, loads with a plain strict ``load_state_dict`` (after
:func:`rcdml.models.weights.adapt_state_dict`, which only repairs legacy tensor layouts).

Layout details kept from the Caffe model, because the pretrained weights assume them:

* every unit is conv (with bias) -> BatchNorm(eps 1e-5, affine) -> ReLU;
* the stem's and the grid-reduction blocks' max pools use ceil-mode windows without padding;
* the Inception pool branches are 3x3/1 average pools (padding counted) except in ``5b``,
  which max-pools;
* ``3c`` and ``4e`` reduce the grid: no 1x1 branch, stride-2 convolutions, and a max-pooled copy
  of their input passed through unprojected;
* branch outputs are concatenated in the order 1x1, 3x3, double 3x3, pool.

BatchNorm momentum is PyTorch's 0.1, not the port's 0.9: the port copied Caffe's moving-average
fraction (0.9 = weight of the *old* statistics) into PyTorch's momentum (weight of the *new*
ones). It only matters when BatchNorm trains; the paper recipe freezes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rcdml.models.registry import register_backbone
from rcdml.models.weights import adapt_state_dict

IMAGENET_URL = "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"

_BN_EPS = 1e-5
_BN_MOMENTUM = 0.1  # see the module docstring


def _add_unit(net: nn.Module, name: str, in_channels: int, out_channels: int, kernel: int,
              stride: int = 1, bn_momentum: float = _BN_MOMENTUM) -> None:
    """Register the conv ``name`` and its BatchNorm ``name_bn`` on ``net`` (flat, Caffe names)."""
    net.add_module(name, nn.Conv2d(in_channels, out_channels, kernel, stride=stride,
                                   padding=kernel // 2))
    net.add_module(f"{name}_bn", nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=bn_momentum))


def _run_unit(net: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """conv -> BatchNorm -> ReLU of the unit registered as ``name``."""
    x = getattr(net, name)(x)
    x = getattr(net, f"{name}_bn")(x)
    return F.relu(x, inplace=True)


@dataclass(frozen=True)
class _Inception:
    """One Inception block, by its Caffe stage name (``"3a"`` ... ``"5b"``).

    Its units live on the trunk under ``inception_<stage>_<branch>`` (so that the state_dict
    keys are the checkpoint's); this object only knows how to create and run them.
    """

    stage: str
    in_channels: int
    b1x1: int                     # 1x1 branch width; 0 for grid-reduction blocks (no branch)
    b3x3: tuple[int, int]         # 3x3 branch: (1x1 reduce width, 3x3 width)
    double: tuple[int, int]       # double-3x3 branch: (1x1 reduce width, width of both 3x3s)
    pool: Literal["avg", "max"]
    pool_proj: int                # 1x1 projection of the pool branch; 0 passes the pool through
    stride: int = 1               # 2 for grid reduction (3c, 4e)

    @property
    def prefix(self) -> str:
        return f"inception_{self.stage}_"

    @property
    def out_channels(self) -> int:
        return self.b1x1 + self.b3x3[1] + self.double[1] + (self.pool_proj or self.in_channels)

    def build(self, net: nn.Module, bn_momentum: float) -> None:
        p, cin, s = self.prefix, self.in_channels, self.stride
        if self.b1x1:
            _add_unit(net, p + "1x1", cin, self.b1x1, 1, bn_momentum=bn_momentum)
        _add_unit(net, p + "3x3_reduce", cin, self.b3x3[0], 1, bn_momentum=bn_momentum)
        _add_unit(net, p + "3x3", self.b3x3[0], self.b3x3[1], 3, s, bn_momentum=bn_momentum)
        _add_unit(net, p + "double_3x3_reduce", cin, self.double[0], 1, bn_momentum=bn_momentum)
        _add_unit(net, p + "double_3x3_1", self.double[0], self.double[1], 3,
                  bn_momentum=bn_momentum)
        _add_unit(net, p + "double_3x3_2", self.double[1], self.double[1], 3, s,
                  bn_momentum=bn_momentum)
        if self.stride == 2:  # grid reduction: Caffe's unpadded ceil-mode window
            pool: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        elif self.pool == "max":
            pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        else:
            pool = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        net.add_module(p + "pool", pool)
        if self.pool_proj:
            _add_unit(net, p + "pool_proj", cin, self.pool_proj, 1, bn_momentum=bn_momentum)

    def __call__(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        p = self.prefix
        branches = []
        if self.b1x1:
            branches.append(_run_unit(net, p + "1x1", x))
        branches.append(_run_unit(net, p + "3x3", _run_unit(net, p + "3x3_reduce", x)))
        y = _run_unit(net, p + "double_3x3_reduce", x)
        y = _run_unit(net, p + "double_3x3_1", y)
        branches.append(_run_unit(net, p + "double_3x3_2", y))
        pooled = getattr(net, p + "pool")(x)
        branches.append(_run_unit(net, p + "pool_proj", pooled) if self.pool_proj else pooled)
        # A traced graph has fixed shapes (a Python bool of them warns): eager runs check them.
        if (self.stride == 2 and not torch.jit.is_tracing()
                and branches[0].shape[-2:] != pooled.shape[-2:]):
            # Caffe's layout: a floor-mode stride-2 conv and a ceil-mode unpadded max pool only
            # agree on even grids.
            raise ValueError(
                f"bn_inception: inception_{self.stage} needs an even feature map, got "
                f"{tuple(x.shape[-2:])}; use an input size whose grid stays even there "
                f"(e.g. 224, 227 or 256)")
        return torch.cat(branches, dim=1)


# Ioffe & Szegedy (2015), Fig. 5, as ported: stage, in, 1x1, (3x3 reduce, 3x3),
# (double reduce, double 3x3), pool, pool projection, stride.
_BLOCKS: tuple[_Inception, ...] = (
    _Inception("3a", 192, 64, (64, 64), (64, 96), "avg", 32),
    _Inception("3b", 256, 64, (64, 96), (64, 96), "avg", 64),
    _Inception("3c", 320, 0, (128, 160), (64, 96), "max", 0, stride=2),
    _Inception("4a", 576, 224, (64, 96), (96, 128), "avg", 128),
    _Inception("4b", 576, 192, (96, 128), (96, 128), "avg", 128),
    _Inception("4c", 576, 160, (128, 160), (128, 160), "avg", 128),
    _Inception("4d", 608, 96, (128, 192), (160, 192), "avg", 128),
    _Inception("4e", 608, 0, (128, 192), (192, 256), "max", 0, stride=2),
    _Inception("5a", 1056, 352, (192, 320), (160, 224), "avg", 128),
    _Inception("5b", 1024, 352, (192, 320), (192, 224), "max", 128),
)


def _check_table() -> None:
    channels = 192
    for block in _BLOCKS:
        assert block.in_channels == channels, block.stage
        channels = block.out_channels
    assert channels == BNInception.out_channels


class BNInception(nn.Module):
    """BN-Inception up to ``inception_5b`` (no global pooling, no classifier)."""

    out_channels = 1024

    def __init__(self, bn_momentum: float = _BN_MOMENTUM) -> None:
        super().__init__()
        _add_unit(self, "conv1_7x7_s2", 3, 64, 7, stride=2, bn_momentum=bn_momentum)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        _add_unit(self, "conv2_3x3_reduce", 64, 64, 1, bn_momentum=bn_momentum)
        _add_unit(self, "conv2_3x3", 64, 192, 3, bn_momentum=bn_momentum)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for block in _BLOCKS:
            block.build(self, bn_momentum)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random start: Kaiming-normal convolutions, zero biases, identity BatchNorm."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _run_unit(self, "conv1_7x7_s2", x)
        x = self.pool1_3x3_s2(x)
        x = _run_unit(self, "conv2_3x3_reduce", x)
        x = _run_unit(self, "conv2_3x3", x)
        x = self.pool2_3x3_s2(x)
        for block in _BLOCKS:
            x = block(self, x)
        return x


_check_table()


@register_backbone("bn_inception", channels=1024, input_style="bn_inception")
def bn_inception(imagenet: bool) -> nn.Module:
    model = BNInception()
    if imagenet:
        checkpoint = torch.hub.load_state_dict_from_url(IMAGENET_URL, map_location="cpu",
                                                        weights_only=True)
        model.load_state_dict(adapt_state_dict(checkpoint, model))
    return model
