"""What TensorBoard shows beyond scalars: similarity histograms and the embedding projector.

Rank 0 embeds a fixed sample of evaluation images (the same images at every evaluation, so
histograms are comparable across epochs); no collective is involved.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rcdml.data.datasets import ImageList
from rcdml.data.image_io import load_rgb
from rcdml.functional import l2_normalize

THUMBNAIL = 32


class EmbeddingProbe:
    def __init__(self, images: ImageList, transform, size: int, seed: int) -> None:
        """``transform`` is the evaluation transform."""
        n = min(size, len(images))
        self.indices = np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False))
        self.images = images
        self.transform = transform
        self.labels = torch.tensor([images.labels[i] for i in self.indices])

    @torch.no_grad()
    def embed(self, model: nn.Module, device: torch.device, batch_size: int = 128) -> torch.Tensor:
        was_training = model.training
        model.eval()
        out = []
        for start in range(0, len(self.indices), batch_size):
            batch = torch.stack([self.transform(load_rgb(self.images.paths[int(i)]))
                                 for i in self.indices[start:start + batch_size]])
            out.append(model(batch.to(device)).float().cpu())
        model.train(was_training)
        return torch.cat(out) if out else torch.empty(0)

    def thumbnails(self) -> torch.Tensor:
        """(N, 3, 32, 32) images in [0, 1] for the projector's sprite."""
        arrays = [np.asarray(load_rgb(self.images.paths[int(i)]).resize((THUMBNAIL, THUMBNAIL))) for i in self.indices]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def intra_class_similarities(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of all pairs of distinct samples that share a class."""
    sim = l2_normalize(embeddings) @ l2_normalize(embeddings).t()
    same = labels[:, None] == labels[None, :]
    return sim[torch.triu(same, diagonal=1)]


def proxy_similarities(proxies: torch.Tensor, limit: int = 2048, seed: int = 0) -> torch.Tensor:
    """Cosine similarities of distinct proxy pairs (of a fixed random subset beyond ``limit``)."""
    proxies = proxies.detach().float().cpu()
    if proxies.shape[0] > limit:
        keep = torch.from_numpy(np.random.default_rng(seed).choice(proxies.shape[0], limit, replace=False))
        proxies = proxies[keep]
    sim = l2_normalize(proxies) @ l2_normalize(proxies).t()
    return sim[torch.triu(torch.ones_like(sim, dtype=torch.bool), diagonal=1)]
