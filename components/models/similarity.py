"""Item-item similarity: cosine of item embeddings, or of co-occurrence in histories.

Explanations ("because you liked ..."), ``/similar`` and the re-ranking stage's
diversity all use this one measure, so it lives beside the models: serving and
the recommendation step both import it downwards.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from kuberec.components.models.encoded import UserHistory

#: Up to this many item x user cells, co-occurrence vectors are kept dense (float32).
DENSE_CELLS = 20_000_000
#: Most similar items kept per item (itself included) when they are precomputed.
NEIGHBOURS = 100
#: Multiply-adds the all-pairs similarity may cost at load (n_items² x dimension).
NEIGHBOUR_BUDGET = 2e10
#: Co-occurring pairs (sum over users of |history|², the sparse Gram's multiply-adds) up to
#: which the neighbours of a sparse co-occurrence similarity are precomputed at load.
SPARSE_PAIR_BUDGET = 2e8
_CHUNK = 512
_SPARSE_CHUNK = 2048


class Similarity:
    """Item-item cosine similarity from embeddings, or from co-occurrence in histories.

    Vectors are kept as they are and cosines computed as ``(u . v) * s_u * s_v`` with the
    inverse norms ``s``. For co-occurrence the vectors are 0/1, so every dot product is an
    exact count whatever order a BLAS kernel sums in: the precomputed neighbours and the
    exact product then agree bit for bit, and so do their tie-breaks.
    """

    def __init__(self, history: UserHistory, embeddings: np.ndarray | None = None) -> None:
        if embeddings is not None:
            vectors: np.ndarray | sp.csr_matrix = np.asarray(embeddings, dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1)
            self.kind = "embedding"
        else:
            vectors = history.seen_matrix().T.tocsr()  # items x users, 0/1
            norms = np.sqrt(np.asarray(vectors.sum(axis=1)).ravel())
            # Small catalogues: a dense matrix makes each explanation one small product.
            if vectors.shape[0] * vectors.shape[1] <= DENSE_CELLS:
                vectors = vectors.toarray()
            self.kind = "co-occurrence"
        self._scale = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        self._dense: np.ndarray | None = vectors if isinstance(vectors, np.ndarray) else None
        self._sparse: sp.csr_matrix | None = None if self._dense is not None else vectors
        self._neighbours: np.ndarray | None = None  # (n_items, m) item indices, best first
        self._neighbour_sims: np.ndarray | None = None
        if self._dense is not None:
            n_items, dim = self._dense.shape
            if float(n_items) * n_items * dim <= NEIGHBOUR_BUDGET:
                self._neighbours, self._neighbour_sims = _nearest(
                    self._dense, self._scale, NEIGHBOURS
                )
        elif self._sparse is not None:
            per_user = np.bincount(self._sparse.indices, minlength=self._sparse.shape[1])
            if float((per_user.astype(np.float64) ** 2).sum()) <= SPARSE_PAIR_BUDGET:
                # Large catalogues: the sparse Gram costs the co-occurring pairs, not n_items².
                self._neighbours, self._neighbour_sims = _sparse_nearest(
                    self._sparse, self._scale, NEIGHBOURS
                )

    @property
    def has_neighbours(self) -> bool:
        return self._neighbours is not None

    def neighbour_table(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Each item's ``NEIGHBOURS`` most similar items and their cosines, where precomputed."""
        if self._neighbours is None or self._neighbour_sims is None:
            return None
        return self._neighbours, self._neighbour_sims

    def between(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """(len(left), len(right)) cosine similarities of item indices."""
        if self._dense is not None:
            dots = self._dense[left] @ self._dense[right].T
        else:
            assert self._sparse is not None
            dots = np.asarray((self._sparse[left] @ self._sparse[right].T).todense())
        return _cosines(dots, self._scale[left], self._scale[right])

    def against(self, right: np.ndarray) -> Callable[[int], np.ndarray]:
        """``item -> between([item], right)[0]`` for a fixed ``right``, its vectors gathered once.

        MMR compares each pick with the same pool; at a million items gathering the
        pool's rows from the catalogue's matrix cost 10x the product itself.
        """
        right = np.asarray(right, dtype=np.int64)
        if self._dense is None:
            return lambda item: self.between(np.asarray([item]), right)[0]
        dense, block, scale = self._dense, self._dense[right], self._scale[right]
        return lambda item: _cosines(dense[[item]] @ block.T, self._scale[[item]], scale)[0]

    def row(self, item: int) -> np.ndarray:
        """(n_items,) cosine similarities of one item to every item (one matrix-vector product)."""
        if self._dense is not None:
            dots = self._dense @ self._dense[item]
        else:
            assert self._sparse is not None
            dots = np.asarray((self._sparse @ self._sparse[item].T).todense()).ravel()
        return _cosines(dots[None, :], self._scale[[item]], self._scale)[0]

    def best_match(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For each of ``items``, the item of ``history`` most similar to it.

        Ties go to the lowest item index, on both paths.
        """
        history = np.asarray(history, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        best = np.empty(len(items), dtype=np.int64)
        todo = np.ones(len(items), dtype=bool)
        if self._neighbours is not None and len(items) and len(history):
            assert self._neighbour_sims is not None
            table, sims = self._neighbours[items], self._neighbour_sims[items]
            taken = np.zeros(len(self._scale), dtype=bool)  # a lookup: cheaper than np.isin
            taken[history] = True
            hit = taken[table] & self._trusted(sims)
            found = hit.any(axis=1)
            first = hit.argmax(axis=1)
            best[found] = table[found, first[found]]
            todo = ~found
        if todo.any() and len(history):
            recent = np.unique(history)
            best[todo] = recent[np.argmax(self.between(recent, items[todo]), axis=0)]
        return best

    def _trusted(self, sims: np.ndarray) -> np.ndarray:
        """Neighbours strictly above each row's last kept similarity.

        An item tied with the last kept one may have been cut off by a
        lower-indexed equal, so the exact path decides those.
        """
        assert self._neighbours is not None
        n_items, kept = self._neighbours.shape
        if kept >= n_items:
            return np.ones(sims.shape, dtype=bool)  # every item kept: nothing cut off
        return sims > sims[..., -1:]

    def most_similar(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to ``item`` (itself excluded), best first."""
        if self._neighbours is not None and self._neighbour_sims is not None:
            row, sims = self._neighbours[item], self._neighbour_sims[item]
            keep = (row != item) & self._trusted(sims)
            if keep.sum() >= k:
                return row[keep][:k].copy(), sims[keep][:k].copy()
        row = self.row(item)
        row[item] = -np.inf
        k = min(k, len(row) - 1)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        kth = row[np.argpartition(-row, k - 1)[:k]].min()
        top = np.flatnonzero(row >= kth)  # every item tied with the k-th: ties go by index
        top = top[np.lexsort((top, -row[top]))][:k]
        top = top[np.isfinite(row[top])]
        return top.astype(np.int64), row[top]


def _cosines(dots: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Dot products to cosines, given the inverse norms of both sides (one order of rounding)."""
    return (dots.astype(np.float32) * left[:, None]) * right[None, :]


def _nearest(vectors: np.ndarray, scale: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``m`` largest cosines: indices and values, best first.

    Equal similarities are ordered by item index, as :meth:`Similarity.best_match`'s exact
    path breaks ties.
    """
    n_items = len(vectors)
    m = min(m, n_items)
    indices = np.empty((n_items, m), dtype=np.int64)
    values = np.empty((n_items, m), dtype=np.float32)
    for lo in range(0, n_items, _CHUNK):
        sims = _cosines(vectors[lo : lo + _CHUNK] @ vectors.T, scale[lo : lo + _CHUNK], scale)
        if m < n_items:
            part = np.argpartition(-sims, m - 1, axis=1)[:, :m]
        else:
            part = np.broadcast_to(np.arange(n_items), sims.shape).copy()
        top = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -top), axis=-1)
        indices[lo : lo + _CHUNK] = np.take_along_axis(part, order, axis=1)
        values[lo : lo + _CHUNK] = np.take_along_axis(top, order, axis=1)
    return indices, values


def _sparse_nearest(
    vectors: sp.csr_matrix, scale: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_nearest` for 0/1 sparse vectors, from the rows of their sparse Gram matrix.

    Only co-occurring items have a cosine above 0; a row with fewer than ``m`` of them is
    padded with the item itself at similarity 0, which :meth:`Similarity._trusted` never
    trusts (a tie with the last kept value), so the exact path decides past the padding.
    """
    n_items = vectors.shape[0]
    m = min(m, n_items)
    indices = np.repeat(np.arange(n_items, dtype=np.int64)[:, None], m, axis=1)
    values = np.zeros((n_items, m), dtype=np.float32)
    transposed = vectors.T.tocsr()
    for lo in range(0, n_items, _SPARSE_CHUNK):
        gram = (vectors[lo : lo + _SPARSE_CHUNK] @ transposed).tocsr()
        for offset in range(gram.shape[0]):
            start, stop = gram.indptr[offset], gram.indptr[offset + 1]
            if start == stop:
                continue
            cols = gram.indices[start:stop].astype(np.int64)
            row = lo + offset
            sims = _cosines(gram.data[None, start:stop], scale[[row]], scale[cols])[0]
            order = np.lexsort((cols, -sims))[:m]
            indices[row, : len(order)] = cols[order]
            values[row, : len(order)] = sims[order]
    return indices, values
