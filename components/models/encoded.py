"""A canonical :class:`Dataset` turned into the dense arrays every model trains on.

Ids become dense indices through :class:`IdIndex` (string or integer ids alike);
the item universe is the items table plus any item seen in interactions, the
user universe the users table plus any interacting user, so a user or item with
no training interactions still has an index (and features). Interaction arrays
are sorted by (user, time), so each user's rows are their chronological
sequence and :class:`UserHistory` is a view on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from kuberec.components.datasets.canonical import Dataset, IdIndex
from kuberec.components.models.features import (
    FeatureEncodings,
    context_features,
    fit_encodings,
    genre_matrix,
    user_categorical_matrix,
    user_numeric_matrix,
    year_buckets,
)
from kuberec.errors import DataError


@dataclass(frozen=True)
class DataSchema:
    """The shapes a model's layers depend on: enough to rebuild it before loading weights."""

    n_users: int
    n_items: int
    n_genres: int = 0
    n_year_buckets: int = 1
    user_cardinalities: tuple[int, ...] = ()
    n_user_numeric: int = 0
    text_dim: int = 0

    @property
    def pad_item(self) -> int:
        """The item index that pads histories; embeddings have ``n_items + 1`` rows."""
        return self.n_items

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "user_cardinalities": list(self.user_cardinalities)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataSchema:
        cards = tuple(int(c) for c in values.get("user_cardinalities", ()))
        return cls(**{**values, "user_cardinalities": cards})


def encode_pairs(
    user_index: IdIndex, item_index: IdIndex, frame: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Dense (users, items) of a frame with ``user_id, item_id``; unknown ids -> -1."""
    return (
        user_index.encode(frame["user_id"], unknown=-1),
        item_index.encode(frame["item_id"], unknown=-1),
    )


@dataclass(frozen=True)
class UserHistory:
    """Each user's items in time order (CSR layout): the input of history-based scoring."""

    indptr: np.ndarray
    items: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def recent(self, users: Sequence[int] | np.ndarray, length: int | None) -> np.ndarray:
        """(len(users), length) int64: the last ``length`` items, left-padded with ``n_items``.

        ``length=None`` keeps whole histories (padded to the longest of ``users``).
        Users outside the known range (cold users) get an empty history.
        """
        users = np.asarray(users, dtype=np.int64)
        known = (users >= 0) & (users < self.n_users)
        safe = np.where(known, users, 0)
        lens = np.where(known, self.indptr[safe + 1] - self.indptr[safe], 0)
        width = int(lens.max(initial=0)) if length is None else int(length)
        width = max(width, 1)
        take = np.minimum(lens, width)
        out = np.full((len(users), width), self.n_items, dtype=np.int64)
        for row in np.flatnonzero(take):
            stop = self.indptr[safe[row] + 1]
            out[row, width - take[row] :] = self.items[stop - take[row] : stop]
        return out

    def seen_matrix(self) -> sp.csr_matrix:
        """Binary (n_users, n_items) CSR of items each user interacted with."""
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths())
        ones = np.ones(len(self.items), dtype=np.float32)
        matrix = sp.csr_matrix((ones, (rows, self.items)), shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def save(self, path: Path) -> None:
        np.savez(path, indptr=self.indptr, items=self.items, n_items=np.int64(self.n_items))

    @classmethod
    def load(cls, path: Path) -> UserHistory:
        with np.load(path) as f:
            return cls(f["indptr"], f["items"], int(f["n_items"]))


@dataclass(frozen=True, eq=False)
class EncodedData:
    """Dense training data: interactions in (user, time) order plus feature tables."""

    user_index: IdIndex
    item_index: IdIndex
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    has_timestamps: bool
    history: UserHistory
    seen: sp.csr_matrix
    encodings: FeatureEncodings
    item_genres: np.ndarray
    item_year: np.ndarray
    item_text: np.ndarray | None
    user_categorical: np.ndarray
    user_numeric: np.ndarray
    item_counts: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_index)

    @property
    def n_items(self) -> int:
        return len(self.item_index)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    @property
    def schema(self) -> DataSchema:
        return DataSchema(
            n_users=self.n_users,
            n_items=self.n_items,
            n_genres=self.item_genres.shape[1],
            n_year_buckets=self.encodings.n_year_buckets,
            user_cardinalities=self.encodings.user_cardinalities,
            n_user_numeric=self.user_numeric.shape[1],
            text_dim=0 if self.item_text is None else self.item_text.shape[1],
        )

    def context(self) -> np.ndarray:
        """(n_interactions, 2) hour-of-day and weekday indices of each interaction."""
        return context_features(self.timestamps, self.has_timestamps)

    def encode_pairs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return encode_pairs(self.user_index, self.item_index, frame)

    def item_first_seen(self) -> np.ndarray | None:
        """(n_items,) the earliest interaction time per item in ns (-1: never taken).

        ``None`` when the data had no timestamps. What the freshness boost ranks by.
        """
        if not self.has_timestamps:
            return None
        first = np.full(self.n_items, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, self.items, self.timestamps)
        return np.where(first == np.iinfo(np.int64).max, -1, first)

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        *,
        text_embeddings: np.ndarray | None = None,
        categorical: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
    ) -> EncodedData:
        """Encode ``dataset``; ``text_embeddings`` rows follow ``dataset.items`` rows.

        Pass the output of ``features.embeddings.embed_items(dataset.items)``; items
        that appear only in interactions get a zero text vector.
        """
        inter = dataset.interactions
        user_index = IdIndex.fit(pd.concat([dataset.users["user_id"], inter["user_id"]]))
        item_index = IdIndex.fit(pd.concat([dataset.items["item_id"], inter["item_id"]]))
        users = user_index.encode(inter["user_id"])
        items = item_index.encode(inter["item_id"])
        timestamps = _timestamps_ns(inter["timestamp"])
        order = (
            np.lexsort((timestamps, users))
            if dataset.has_timestamps
            else np.argsort(users, kind="stable")
        )
        users, items, timestamps = users[order], items[order], timestamps[order]
        n_users, n_items = len(user_index), len(item_index)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])
        history = UserHistory(indptr.astype(np.int64), items, n_items)
        enc = fit_encodings(dataset.items, dataset.users, categorical=categorical, numeric=numeric)
        item_rows = _rows_by_index(dataset.items, "item_id", item_index)
        user_rows = _rows_by_index(dataset.users, "user_id", user_index)
        return cls(
            user_index=user_index,
            item_index=item_index,
            users=users,
            items=items,
            ratings=inter["rating"].to_numpy(np.float32, na_value=np.nan)[order],
            timestamps=timestamps,
            has_timestamps=dataset.has_timestamps,
            history=history,
            seen=history.seen_matrix(),
            encodings=enc,
            item_genres=genre_matrix(item_rows, enc),
            item_year=year_buckets(item_rows["year"], enc),
            item_text=_text_matrix(text_embeddings, dataset.items, item_index),
            user_categorical=user_categorical_matrix(user_rows, enc),
            user_numeric=user_numeric_matrix(user_rows, enc),
            item_counts=np.bincount(items, minlength=n_items).astype(np.float64),
        )


def _timestamps_ns(column: pd.Series) -> np.ndarray:
    values = pd.to_datetime(column, utc=True).dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _rows_by_index(table: pd.DataFrame, id_column: str, index: IdIndex) -> pd.DataFrame:
    """One row per dense index (first occurrence of each id), empty rows for absent ids."""
    codes = index.encode(table[id_column])
    frame = table.assign(_code=codes).drop_duplicates("_code").set_index("_code")
    frame = frame.reindex(np.arange(len(index)))
    if "genres" in frame.columns:
        frame["genres"] = [
            g if isinstance(g, (list, tuple, np.ndarray)) else [] for g in frame["genres"]
        ]
    return frame.reset_index(drop=True)


def _text_matrix(
    embeddings: np.ndarray | None, items: pd.DataFrame, index: IdIndex
) -> np.ndarray | None:
    if embeddings is None:
        return None
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(items):
        raise DataError(
            f"text embeddings must be a (n_items, dim) matrix with one row per row of the "
            f"items table ({len(items)} rows), got shape {matrix.shape}; compute them with "
            "embed_items(dataset.items)"
        )
    if not np.isfinite(matrix).all():
        raise DataError("text embeddings contain NaN or inf values; recompute them")
    out = np.zeros((len(index), matrix.shape[1]), dtype=np.float32)
    out[index.encode(items["item_id"])] = matrix
    return out
