"""A model seen as a dot product: ``score(u, i) = user_vector(u) · items[i]``.

Models whose score is one (``mf``, ``two_tower``, ``sasrec``, ``gru4rec``;
``popularity`` trivially) expose their vectors through :func:`factorize`: serving
searches them with an index, and item similarity reads their item embeddings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kuberec.components.models.base import Recommender

UserVectors = Callable[[Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class Factors:
    """A model seen as ``score(u, i) = user_vector(u) · items[i]``."""

    items: np.ndarray  # (n_items, d) float32, C-contiguous
    user_vectors: UserVectors  # (users (B,), padded history (B, L) | None) -> (B, d)
    #: Item vectors whose cosine says "similar items" (no bias column); None: not meaningful.
    embeddings: np.ndarray | None = None


def factorize(model: Recommender) -> Factors | None:
    """The dot-product form of ``model``, or ``None`` when its scores are not one."""
    from kuberec.components.models.mf import MatrixFactorization
    from kuberec.components.models.popularity import Popularity
    from kuberec.components.models.sequential import SequenceRecommender
    from kuberec.components.models.two_tower import TwoTower

    with torch.no_grad():
        if isinstance(model, MatrixFactorization):
            # p_u · q_i + b_i == [p_u, 1] · [q_i, b_i]
            items = torch.cat([model.item_factors.weight, model.item_bias.weight], dim=1)

            @torch.no_grad()
            def mf_users(users: Tensor, history: Tensor | None) -> Tensor:
                p = model._users(users)
                return torch.cat([p, torch.ones(len(p), 1, dtype=p.dtype)], dim=1)

            return Factors(_rows(items), mf_users, _rows(model.item_factors.weight))
        if isinstance(model, TwoTower):
            items = model.item_vectors()

            @torch.no_grad()
            def tower_users(users: Tensor, history: Tensor | None) -> Tensor:
                return model.user_vectors(users, history) / model.temperature

            vectors = _rows(items)
            return Factors(vectors, tower_users, vectors)
        if isinstance(model, SequenceRecommender):
            items = model._catalogue()

            @torch.no_grad()
            def sequence_users(users: Tensor, history: Tensor | None) -> Tensor:
                if history is None:
                    raise ValueError("sequence models need the user's history")
                return model.encode(history[:, -model.history_length :])[:, -1]

            vectors = _rows(items)
            return Factors(vectors, sequence_users, vectors)
        if isinstance(model, Popularity):
            counts = model.counts[:, None]

            @torch.no_grad()
            def constant_users(users: Tensor, history: Tensor | None) -> Tensor:
                return torch.ones(len(users), 1)

            return Factors(_rows(counts), constant_users)
    return None


def _rows(matrix: Tensor) -> np.ndarray:
    return np.ascontiguousarray(matrix.detach().float().cpu().numpy())
