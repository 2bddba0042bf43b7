"""Retrieval pictures: each query followed by its top-k thumbnails, the similarity under each,
and a green (same label) or red (other label) frame where labels are known.

Used by ``rcdml-search`` and, at each evaluation during training, for a seeded sample of
evaluation queries and for the worst queries (most other-class items ranked before their first
correct match), written to ``retrieval/epoch_NNN.png`` and TensorBoard.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from rcdml.data.image_io import load_rgb
from rcdml.eval.ranking import RankStats
from rcdml.functional import l2_normalize

THUMB, BORDER, CAPTION = 64, 3, 14
QUERY_FRAME, RIGHT, WRONG, UNKNOWN = (40, 90, 230), (30, 170, 60), (220, 40, 40), (160, 160, 160)
# Neighbours shown per query in the training pictures.
TRAINING_K = 8


@dataclass
class Row:
    query: str
    hits: list[str]
    scores: list[float]
    # Per hit: True (same label as the query), False, or None (unknown labels).
    correct: list[bool | None]


def cell_size() -> tuple[int, int]:
    return THUMB + 2 * BORDER, THUMB + 2 * BORDER + CAPTION


def _thumbnail(path: str) -> Image.Image:
    return load_rgb(path).resize((THUMB, THUMB))


def grid(rows: list[Row]) -> Image.Image:
    """One line per row: the query (blue frame), then its hits left to right."""
    width, height = cell_size()
    columns = 1 + max((len(r.hits) for r in rows), default=0)
    canvas = Image.new("RGB", (columns * width, max(1, len(rows)) * height), "white")
    draw = ImageDraw.Draw(canvas)
    for y, row in enumerate(rows):
        cells = [(row.query, QUERY_FRAME, "query")]
        cells += [(path, UNKNOWN if ok is None else RIGHT if ok else WRONG, f"{score:.3f}")
                  for path, score, ok in zip(row.hits, row.scores, row.correct)]
        for x, (path, frame, caption) in enumerate(cells):
            left, top = x * width, y * height
            draw.rectangle([left, top, left + width - 1, top + width - 1], fill=frame)
            canvas.paste(_thumbnail(path), (left + BORDER, top + BORDER))
            draw.text((left + BORDER, top + width), caption, fill="black")
    return canvas


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float in [0, 1], TensorBoard's add_image layout."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0


def sample_queries(n: int, count: int, seed: int) -> np.ndarray:
    """The same ``count`` query positions at every evaluation of a run."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))


def _rows(queries: np.ndarray, q_emb: torch.Tensor, g_emb: torch.Tensor, query, gallery,
          self_retrieval: bool) -> list[Row]:
    sim = l2_normalize(q_emb[torch.as_tensor(queries)]) @ l2_normalize(g_emb).t()
    if self_retrieval:
        sim[torch.arange(len(queries)), torch.as_tensor(queries)] = float("-inf")
    scores, ids = sim.topk(min(TRAINING_K, g_emb.shape[0] - self_retrieval), dim=1)
    rows = []
    for q, hit_ids, hit_scores in zip(queries, ids.tolist(), scores.tolist()):
        label = query.labels[q]
        rows.append(Row(query.paths[q], [gallery.paths[i] for i in hit_ids], hit_scores,
                        [gallery.labels[i] == label for i in hit_ids]))
    return rows


def training_pictures(embeddings, stats: RankStats, data, count: int, seed: int,
                      paths: tuple[str, str]) -> dict[str, torch.Tensor]:
    """Write ``paths`` (:meth:`rcdml.rundir.RunDir.retrieval_pictures`): ``count`` seeded queries,
    and the ``count`` queries with the most other-class items before their first correct match, from an evaluation's embeddings (``EvalEmbeddings``) of ``data``
    (``RetrievalData``) and its per-query ``stats`` (reused: ranking all queries again would
    cost as much as the evaluation); returns them as TensorBoard images by tag."""
    from rcdml.io import atomic_write_bytes

    self_retrieval = embeddings.gallery is None
    gallery = data.query if self_retrieval else data.gallery
    g_emb = embeddings.query if self_retrieval else embeddings.gallery
    # Queries without any correct item in the gallery cannot be ranked; leave them out.
    rankable = torch.nonzero(stats.relevant > 0).flatten()
    order = torch.argsort(stats.before_first[rankable], descending=True, stable=True)
    worst = np.sort(rankable[order[:count]].cpu().numpy())
    pictures = {}
    for tag, path, queries in (("retrieval/sample", paths[0],
                                sample_queries(len(data.query), count, seed)),
                               ("retrieval/worst", paths[1], worst)):
        image = grid(_rows(queries, embeddings.query.cpu(), g_emb.cpu(), data.query, gallery,
                           self_retrieval))
        atomic_write_bytes(path,
                           lambda f, im=image: im.save(f, format="PNG"))
        pictures[tag] = to_tensor(image)
    return pictures
