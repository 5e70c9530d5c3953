"""The recommendation step: scores -> drop seen and filtered items -> top-K.

Top-K selects each row's K best scores with ``torch.topk`` (linear in the
catalogue) and then orders only the K winners. Ties are broken by the lower item
index, also at the K-th place, so a list never depends on the selection's
internal order. A user with fewer candidates than K gets all of them; the rest
of the row is padded with item -1 and score -inf.
A NaN score ranks below every real score but above excluded items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.models.base import Recommender
from kuberec.components.models.encoded import UserHistory
from kuberec.errors import ConfigError

Mask: TypeAlias = np.ndarray | sp.spmatrix | sp.sparray

#: Score cells (users x items) held at once: top-K keeps a few float64 copies of them.
SCORE_CELLS = 8_000_000


def user_batch(n_items: int, most: int = 512) -> int:
    """Users scored together: ``most`` on small catalogues, fewer at a million items."""
    return max(1, min(most, SCORE_CELLS // max(n_items, 1)))


@dataclass(frozen=True)
class TopK:
    """Ranked item indices and scores per user, best first; -1 / -inf pad short rows."""

    items: np.ndarray
    scores: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return (self.items >= 0).sum(axis=1)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        n = int(self.counts[i])
        return self.items[i, :n], self.scores[i, :n]

    def to_frame(self, user_ids: Sequence[object], item_index: IdIndex) -> pd.DataFrame:
        """Long ``user_id, item_id, score, rank`` rows (rank 1-based), as metrics expect."""
        rows, cols = np.nonzero(self.items >= 0)
        ids = np.asarray(list(user_ids), dtype=object)
        return pd.DataFrame(
            {
                "user_id": pd.Series(ids[rows].tolist()),
                "item_id": pd.Series(item_index.decode(self.items[rows, cols])),
                "score": self.scores[rows, cols].astype(np.float64),
                "rank": cols.astype(np.int64) + 1,
            }
        )


def top_k(
    scores: np.ndarray | Tensor,
    k: int,
    *,
    exclude: Mask | None = None,
    allowed: np.ndarray | None = None,
) -> TopK:
    """The best ``k`` items per row of ``scores`` (B, n_items).

    ``exclude``: (B, n_items) bool array or sparse matrix of items to drop per row
    (e.g. ``seen[users]``). ``allowed``: item indices or an (n_items,) / (B, n_items)
    bool mask of the only items that may be recommended.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    values = _as_array(scores)
    return top_k_among(values, _candidates(values.shape, exclude, allowed), k)


def top_k_among(values: np.ndarray, candidate: np.ndarray, k: int) -> TopK:
    """:func:`top_k` of float ``values`` (B, n_items) over a (B, n_items) bool mask."""
    n_rows, n_items = values.shape
    k_eff = min(int(k), n_items)
    if k_eff == 0 or n_rows == 0:
        return TopK(np.zeros((n_rows, 0), np.int64), np.zeros((n_rows, 0), np.float32))
    key = np.where(np.isfinite(values), values, np.finfo(values.dtype).min)
    np.putmask(key, ~candidate, -np.inf)
    index = _best_indices(key, k_eff)
    rows = np.arange(n_rows)[:, None]
    valid = candidate[rows, index]
    width = int(valid.sum(axis=1).max(initial=0))
    items = np.where(valid, index, -1)[:, :width]
    out_scores = np.where(valid, values[rows, index], -np.inf)[:, :width]
    return TopK(items.astype(np.int64), out_scores.astype(np.float32))


def _as_array(scores: np.ndarray | Tensor) -> np.ndarray:
    """(B, n_items) float32 or float64 scores; float32 stays float32 (ranking is the same)."""
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu()
        scores = (
            scores if scores.dtype in (torch.float32, torch.float64) else scores.float()
        ).numpy()
    values = np.asarray(scores)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    if values.ndim != 2:
        raise ValueError(f"scores must be (n_users, n_items), got shape {values.shape}")
    return values


def _candidates(
    shape: tuple[int, int], exclude: Mask | None, allowed: np.ndarray | None
) -> np.ndarray:
    candidate = np.ones(shape, dtype=bool)
    if allowed is not None:
        candidate &= _allowed_mask(np.asarray(allowed), shape)
    if exclude is not None:
        dense = np.asarray(
            exclude.toarray() if isinstance(exclude, sp.spmatrix | sp.sparray) else exclude
        )
        if dense.shape != shape:
            raise ValueError(f"exclude must have the scores' shape {shape}, got {dense.shape}")
        candidate &= ~dense.astype(bool)
    return candidate


def _allowed_mask(allowed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    n_items = shape[1]
    if allowed.dtype == bool:
        if allowed.shape not in ((n_items,), shape):
            raise ValueError(f"allowed mask must be ({n_items},) or {shape}, got {allowed.shape}")
        return allowed
    indices = allowed.astype(np.int64).ravel()
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise ConfigError(f"allowed item indices must be in [0, {n_items}), got out-of-range ones")
    mask = np.zeros(n_items, dtype=bool)
    mask[indices] = True
    return mask


def _best_indices(key: np.ndarray, k: int) -> np.ndarray:
    """(B, k) indices of the largest keys, best first, ties to the lower index.

    ``torch.topk`` selects each row's k largest keys (10-20x faster than numpy's
    introselect, which also degrades on the tie masses closed-form models produce).
    Its choice among keys equal to the k-th one is arbitrary, so in rows with more
    such keys than places those places go to the lowest-indexed ones.
    """
    top, index = torch.topk(torch.from_numpy(key), k, dim=1, sorted=False)
    top, index = top.numpy(), index.numpy()
    kth = top.min(axis=1, keepdims=True)
    at_kth = top == kth
    places = at_kth.sum(axis=1)
    excess = np.flatnonzero((key == kth).sum(axis=1) > places)
    for row in excess:
        lowest = np.flatnonzero(key[row] == kth[row])[: places[row]]
        index[row, at_kth[row]] = lowest
    # ``top`` is still each place's key: a replaced place and its replacement both hold the k-th
    return np.take_along_axis(index, np.lexsort((index, -top), axis=1), axis=1)


def genre_mask(
    item_genres: np.ndarray, vocabulary: Sequence[str], genres: Sequence[str]
) -> np.ndarray:
    """(n_items,) bool: items with at least one of ``genres`` (a genre filter for top_k)."""
    position = {g: i for i, g in enumerate(vocabulary)}
    unknown = [g for g in genres if g not in position]
    if unknown:
        raise ConfigError(f"unknown genre(s) {unknown}; valid: {list(vocabulary)}")
    columns = [position[g] for g in genres]
    if not columns:
        return np.zeros(len(item_genres), dtype=bool)
    return np.asarray(item_genres[:, columns].any(axis=1))


class Select(Protocol):
    """Scores -> lists: :func:`top_k`, or top-K plus re-ranking (:class:`.ranking.Ranker`)."""

    def __call__(
        self,
        scores: np.ndarray | Tensor,
        k: int,
        *,
        exclude: Mask | None = None,
        allowed: np.ndarray | None = None,
    ) -> TopK: ...


@torch.no_grad()
def score_users(model: Recommender, history: UserHistory, users: np.ndarray) -> Tensor:
    """(len(users), n_items) scores, feeding each model the history length it reads."""
    model.eval()
    device = model.device
    batch_users = torch.as_tensor(np.asarray(users, dtype=np.int64), device=device)
    recent = None
    if model.history_length != 0:
        recent = torch.as_tensor(history.recent(users, model.history_length), device=device)
    return model.score(batch_users, recent)


def recommend(
    model: Recommender,
    history: UserHistory,
    users: Sequence[int] | np.ndarray,
    k: int,
    *,
    exclude_seen: bool = True,
    allowed: np.ndarray | None = None,
    batch_size: int | None = None,
    select: Select = top_k,
) -> TopK:
    """Top-K item indices for user indices (unknown users: -1), in batches of users.

    ``select`` turns each batch's scores into lists (default: the plain top-K).
    ``batch_size`` defaults to :func:`user_batch` of the catalogue, so memory stays
    bounded at any catalogue size.
    """
    users = np.asarray(users, dtype=np.int64)
    batch_size = batch_size or user_batch(model.schema.n_items)
    seen = history.seen_matrix() if exclude_seen else None
    parts: list[TopK] = []
    for lo in range(0, len(users), batch_size):
        chunk = users[lo : lo + batch_size]
        exclude = _seen_rows(seen, chunk) if seen is not None else None
        parts.append(
            select(score_users(model, history, chunk), k, exclude=exclude, allowed=allowed)
        )
    return _concat(parts)


def _seen_rows(seen: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
    """Rows of ``seen`` for ``users``; unknown users (out of range) have seen nothing."""
    known = (users >= 0) & (users < seen.shape[0])
    rows = seen[np.where(known, users, 0)]
    return sp.csr_matrix(sp.diags(known.astype(np.float32)) @ rows)


def _concat(parts: list[TopK]) -> TopK:
    if not parts:
        return TopK(np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32))
    width = max(p.items.shape[1] for p in parts)
    items = [
        np.pad(p.items, ((0, 0), (0, width - p.items.shape[1])), constant_values=-1) for p in parts
    ]
    scores = [
        np.pad(p.scores, ((0, 0), (0, width - p.scores.shape[1])), constant_values=-np.inf)
        for p in parts
    ]
    return TopK(np.concatenate(items), np.concatenate(scores))
