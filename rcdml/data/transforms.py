"""torchvision image transforms for training and evaluation, per backbone input style."""
from __future__ import annotations

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# BN-Inception was trained on BGR pixels in [0, 255] minus this per-channel (B, G, R) mean.
BN_INCEPTION_MEAN_BGR = (104.0, 117.0, 128.0)


class BGR255(torch.nn.Module):
    """RGB tensor in [0, 1] -> BGR in [0, 255] minus the BN-Inception mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(BN_INCEPTION_MEAN_BGR, dtype=x.dtype).view(3, 1, 1)
        return x.flip(0) * 255.0 - mean


def normalization(input_style: str) -> torch.nn.Module:
    if input_style == "bn_inception":
        return BGR255()
    return T.Normalize(IMAGENET_MEAN, IMAGENET_STD)


def train_transform(cfg, input_style: str) -> T.Compose:
    """Random-resized crop (+ optional horizontal flip), then the backbone's normalisation."""
    steps = [T.RandomResizedCrop(cfg.image_size, scale=tuple(cfg.crop_scale), antialias=True)]
    if cfg.flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), normalization(input_style)]
    return T.Compose(steps)


def eval_transform(cfg, input_style: str) -> T.Compose:
    """Resize the short side to ``resize_size``, centre-crop ``image_size``, normalise."""
    return T.Compose([T.Resize(cfg.resize_size, antialias=True), T.CenterCrop(cfg.image_size),
                      T.ToTensor(), normalization(input_style)])
