"""Item-kNN baseline: cosine similarity of item columns of the user-item matrix.

score(u, j) = Σ over items h in u's history of sim(h, j), where each item keeps
only its ``neighbours`` most similar items (Sarwar et al. 2001; Deshpande &
Karypis 2004). Similarities are computed with scipy in row blocks, so memory is
bounded by the block, not the catalogue squared; scoring is a sparse matrix product
(torch, so it also runs on CUDA) whose memory is O(n_items * neighbours).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from kuberec.components.models.base import Recommender, require_history
from kuberec.components.models.encoded import DataSchema, EncodedData
from kuberec.components.models.hparams import FloatRange, IntRange
from kuberec.components.models.model_type import ModelType

_CELLS_PER_BLOCK = 4_000_000


def neighbour_count(n_items: int, neighbours: int) -> int:
    """Neighbours actually kept: an item has at most n_items - 1 others."""
    return max(1, min(neighbours, n_items - 1))


class ItemKNN(Recommender):
    def __init__(self, schema: DataSchema, *, neighbours: int, shrink: float) -> None:
        super().__init__(schema)
        self.history_length = None  # the whole history
        self.shrink = shrink
        k = neighbour_count(schema.n_items, neighbours)
        self.register_buffer("neighbours", torch.zeros(schema.n_items, k, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(schema.n_items, k))

    def attach(self, data: EncodedData) -> None:
        k = self.neighbours.shape[1]
        neighbours, weights = top_neighbours(data.seen, k, self.shrink)
        self.set_buffer("neighbours", neighbours)
        self.set_buffer("weights", weights)

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        history = require_history(history, "ItemKNN")
        n_items = self.schema.n_items
        bought = torch.zeros(len(history), n_items + 1, device=history.device)
        bought = bought.scatter_(1, history, 1.0)[:, :n_items]  # binary, pad column dropped
        return torch.sparse.mm(self._similarity_transposed(), bought.T).T

    def _similarity_transposed(self) -> Tensor:
        """Sparse S^T with S[h, neighbour] = weight: scores = history @ S, memory O(n k)."""
        n_items, k = self.neighbours.shape
        rows = self.neighbours.flatten()
        cols = torch.arange(n_items, device=rows.device).repeat_interleave(k)
        return torch.sparse_coo_tensor(
            torch.stack([rows, cols]), self.weights.flatten(), (n_items, n_items),
            check_invariants=True,
        ).coalesce()


def top_neighbours(
    seen: sp.csr_matrix, k: int, shrink: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(n_items, k) neighbour indices and cosine weights, largest first, self excluded.

    cos(i, j) = |U_i ∩ U_j| / (sqrt|U_i| sqrt|U_j| + shrink); slots without a
    positive similarity get weight 0.
    """
    columns = sp.csc_matrix(seen, dtype=np.float32).T.tocsr()  # items x users
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=1)).ravel())
    n_items = columns.shape[0]
    neighbours = np.zeros((n_items, k), dtype=np.int64)
    weights = np.zeros((n_items, k), dtype=np.float32)
    block = max(1, _CELLS_PER_BLOCK // max(n_items, 1))
    for lo in range(0, n_items, block):
        hi = min(lo + block, n_items)
        sims = (columns[lo:hi] @ columns.T).toarray()
        sims /= norms[lo:hi, None] * norms[None, :] + shrink + 1e-12
        sims[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n_items else np.tile(
            np.arange(n_items), (hi - lo, 1)
        )[:, :k]
        values = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        neighbours[lo:hi] = np.take_along_axis(top, order, axis=1)
        weights[lo:hi] = np.maximum(np.take_along_axis(values, order, axis=1), 0.0)
    return neighbours, weights


MODEL_TYPES = (
    ModelType(
        "item_knn", ItemKNN, "cosine item-item neighbours of the user's history",
        defaults={"neighbours": 50, "shrink": 0.0},
        rules={"neighbours": IntRange(1), "shrink": FloatRange(0.0)},
        model_keys=("neighbours", "shrink"),
    ),
)
