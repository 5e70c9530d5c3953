"""Item-kNN baseline: cosine similarity of item columns of the user-item matrix.

score(u, j) = Σ over items h in u's history of sim(h, j), where each item keeps
only its ``neighbours`` most similar items (Sarwar et al. 2001; Deshpande &
Karypis 2004). Similarities are computed with scipy in row blocks, so memory is
bounded by the block, not the catalogue squared. Up to ``DENSE_ITEMS`` items a
block is a dense (rows, n_items) array; above, it stays sparse and each row's
top-k is taken from its nonzeros only, so the work is the co-occurrence count
Σ_u |u|², not n_items² (a million items: minutes, not days). Scoring is the
user's sparse history times the sparse (n_items, n_items) neighbour matrix, built
once per weights: |history| x neighbours additions per user, never n_items².
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from kuberec.components.models.base import Recommender, require_history
from kuberec.components.models.encoded import DataSchema, EncodedData
from kuberec.components.models.hparams import FloatRange, IntRange
from kuberec.components.models.model_type import ModelType

_CELLS_PER_BLOCK = 4_000_000
#: Above this many items the neighbour search works on sparse blocks (see the module doc).
DENSE_ITEMS = 20_000


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
        self._matrix: tuple[tuple[int, ...], sp.csr_matrix] | None = None

    def attach(self, data: EncodedData) -> None:
        k = self.neighbours.shape[1]
        neighbours, weights = top_neighbours(data.seen, k, self.shrink)
        self.set_buffer("neighbours", neighbours)
        self.set_buffer("weights", weights)

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        history = require_history(history, "ItemKNN")
        n_items = self.schema.n_items
        rows = history.cpu().numpy()
        batch, width = rows.shape
        flat = rows.ravel()
        real = flat < n_items  # the pad index n_items marks empty slots
        taken = sp.csr_matrix(
            (
                np.ones(int(real.sum()), np.float32),
                (np.repeat(np.arange(batch), width)[real], flat[real]),
            ),
            shape=(batch, n_items),
        )
        taken.data[:] = 1.0  # binary: an item repeated in a history counts once
        scores = (taken @ self._similarity()).toarray()
        return torch.from_numpy(scores).to(history.device)

    def _similarity(self) -> sp.csr_matrix:
        """Sparse S with S[h, neighbour] = weight, rebuilt only when the buffers change."""
        key = (self.neighbours.data_ptr(), self.neighbours._version, self.weights._version)
        if self._matrix is None or self._matrix[0] != key:
            n_items, k = self.neighbours.shape
            matrix = sp.csr_matrix(
                (
                    self.weights.detach().cpu().numpy().ravel().copy(),  # scipy sorts in place
                    self.neighbours.cpu().numpy().ravel().copy(),
                    np.arange(0, n_items * k + 1, k),
                ),
                shape=(n_items, n_items),
            )
            matrix.sum_duplicates()
            self._matrix = (key, matrix)
        return self._matrix[1]


def top_neighbours(
    seen: sp.csr_matrix, k: int, shrink: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(n_items, k) neighbour indices and cosine weights, largest first, self excluded.

    cos(i, j) = |U_i ∩ U_j| / (sqrt|U_i| sqrt|U_j| + shrink); slots without a
    positive similarity get weight 0.
    """
    columns = sp.csc_matrix(seen, dtype=np.float32).T.tocsr()  # items x users
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=1)).ravel())
    if columns.shape[0] <= DENSE_ITEMS:
        return _dense_top(columns, norms, k, shrink)
    return _sparse_top(columns, norms, k, shrink)


def _dense_top(
    columns: sp.csr_matrix, norms: np.ndarray, k: int, shrink: float
) -> tuple[np.ndarray, np.ndarray]:
    n_items = columns.shape[0]
    neighbours = np.zeros((n_items, k), dtype=np.int64)
    weights = np.zeros((n_items, k), dtype=np.float32)
    block = max(1, _CELLS_PER_BLOCK // max(n_items, 1))
    for lo in range(0, n_items, block):
        hi = min(lo + block, n_items)
        sims = (columns[lo:hi] @ columns.T).toarray()
        sims /= norms[lo:hi, None] * norms[None, :] + shrink + 1e-12
        sims[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        top = (
            np.argpartition(-sims, k - 1, axis=1)[:, :k]
            if k < n_items
            else np.tile(np.arange(n_items), (hi - lo, 1))[:, :k]
        )
        values = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        neighbours[lo:hi] = np.take_along_axis(top, order, axis=1)
        weights[lo:hi] = np.maximum(np.take_along_axis(values, order, axis=1), 0.0)
    return neighbours, weights


def _sparse_top(
    columns: sp.csr_matrix, norms: np.ndarray, k: int, shrink: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest cosines among its co-occurring items; ties by item index.

    A row with fewer than k co-occurring items fills its other slots with itself
    at weight 0 (no score). Row blocks are cut so that each block's product has
    at most about ``_CELLS_PER_BLOCK`` nonzeros (bounded by Σ over a row's users of |u|).
    """
    n_items = columns.shape[0]
    users = columns.T.tocsr()  # users x items
    work = columns @ np.diff(users.indptr).astype(np.float64)  # per item: Σ_u |u|
    ends = np.searchsorted(
        np.cumsum(work),
        np.arange(1, int(work.sum() // _CELLS_PER_BLOCK) + 2) * _CELLS_PER_BLOCK,
        side="right",
    )
    bounds = np.unique(np.concatenate([[0], np.clip(ends, 1, n_items), [n_items]]))
    neighbours = np.tile(np.arange(n_items, dtype=np.int64)[:, None], (1, k))
    weights = np.zeros((n_items, k), dtype=np.float32)
    for lo, hi in itertools.pairwise(bounds):
        sims = (columns[lo:hi] @ users).tocsr()
        rows = np.repeat(np.arange(hi - lo), np.diff(sims.indptr))
        cols = sims.indices.astype(np.int64)
        values = sims.data / (norms[lo + rows] * norms[cols] + shrink + 1e-12)
        keep = (cols != lo + rows) & (values > 0)
        rows, cols, values = rows[keep], cols[keep], values[keep]
        order = np.lexsort((cols, -values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        starts = np.searchsorted(rows, np.arange(hi - lo))
        rank = np.arange(len(rows)) - starts[rows]
        top = rank < k
        neighbours[lo + rows[top], rank[top]] = cols[top]
        weights[lo + rows[top], rank[top]] = values[top]
    return neighbours, weights


MODEL_TYPES = (
    ModelType(
        "item_knn",
        ItemKNN,
        "cosine item-item neighbours of the user's history",
        defaults={"neighbours": 50, "shrink": 0.0},
        rules={"neighbours": IntRange(1), "shrink": FloatRange(0.0)},
        model_keys=("neighbours", "shrink"),
    ),
)
