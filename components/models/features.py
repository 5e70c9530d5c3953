"""Feature encoders: item genres and years, user attributes, interaction context.

Each encoder is fitted once on the canonical tables and recorded in
:class:`FeatureEncodings`, which is saved with a model so that serving encodes a
new user's attributes exactly as training did. Index 0 of every categorical
feature means "unknown or missing": models learn it, and values unseen at
training time map to it instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kuberec.errors import DataError

UNKNOWN = 0
#: Categorical user attributes keep this many most frequent values; the rest are "unknown".
MAX_CATEGORIES = 1000
N_HOURS, N_WEEKDAYS = 24, 7
#: Context fields (hour of day, day of week), each with index 0 for "unknown".
CONTEXT_CARDINALITIES = (N_HOURS + 1, N_WEEKDAYS + 1)
_NS_PER_HOUR = 3_600 * 10**9
_NS_PER_DAY = 24 * _NS_PER_HOUR


@dataclass(frozen=True)
class FeatureEncodings:
    """Vocabularies and statistics that turn raw attributes into model inputs."""

    genres: tuple[str, ...] = ()
    year_origin: int | None = None
    n_year_buckets: int = 1
    user_categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    user_numeric: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "genres": list(self.genres),
            "year_origin": self.year_origin,
            "n_year_buckets": self.n_year_buckets,
            "user_categorical": {k: list(v) for k, v in self.user_categorical.items()},
            "user_numeric": {k: list(v) for k, v in self.user_numeric.items()},
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureEncodings:
        origin = values.get("year_origin")
        return cls(
            genres=tuple(str(g) for g in values.get("genres", ())),
            year_origin=None if origin is None else int(origin),
            n_year_buckets=int(values.get("n_year_buckets", 1)),
            user_categorical={
                str(k): tuple(str(x) for x in v)
                for k, v in values.get("user_categorical", {}).items()
            },
            user_numeric={
                str(k): (float(v[0]), float(v[1]))
                for k, v in values.get("user_numeric", {}).items()
            },
        )

    @property
    def user_cardinalities(self) -> tuple[int, ...]:
        """Embedding rows per categorical user attribute (vocabulary plus "unknown")."""
        return tuple(len(v) + 1 for v in self.user_categorical.values())


# --------------------------------------------------------------------------- fitting


def fit_encodings(
    items: pd.DataFrame,
    users: pd.DataFrame,
    *,
    categorical: Sequence[str] | None = None,
    numeric: Sequence[str] | None = None,
) -> FeatureEncodings:
    """Learn genre and year vocabularies and user attribute encodings from the tables.

    User columns are categorical when their dtype is not numeric (str, bool,
    category) and numeric otherwise, unless ``categorical``/``numeric`` say so.
    """
    genres = sorted({str(g) for row in items["genres"] for g in _as_list(row)})
    origin, n_buckets = _year_range(items["year"])
    cat_cols, num_cols = _user_columns(users, categorical, numeric)
    return FeatureEncodings(
        genres=tuple(genres),
        year_origin=origin,
        n_year_buckets=n_buckets,
        user_categorical={c: _vocabulary(users[c]) for c in cat_cols},
        user_numeric={c: _moments(users[c]) for c in num_cols},
    )


def _as_list(value: object) -> list[object]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value]
    return list(value)  # type: ignore[call-overload]


def _year_range(years: pd.Series) -> tuple[int | None, int]:
    """Decade buckets from the first decade present; bucket 0 is "unknown year"."""
    known = pd.to_numeric(years, errors="coerce").dropna()
    if known.empty:
        return None, 1
    first, last = int(known.min()) // 10 * 10, int(known.max()) // 10 * 10
    return first, (last - first) // 10 + 2


def _user_columns(
    users: pd.DataFrame, categorical: Sequence[str] | None, numeric: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    attributes = [c for c in users.columns if c != "user_id"]
    named = [*(categorical or ()), *(numeric or ())]
    missing = [c for c in named if c not in attributes]
    if missing:
        raise DataError(
            f"user attribute column(s) {missing} not in the users table; present: {attributes}"
        )
    if categorical is None:
        categorical = [
            c for c in attributes if c not in (numeric or ()) and not _is_numeric(users[c])
        ]
    if numeric is None:
        numeric = [c for c in attributes if c not in categorical and _is_numeric(users[c])]
    return list(categorical), list(numeric)


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _vocabulary(column: pd.Series) -> tuple[str, ...]:
    """The most frequent values (ties by value), so the vocabulary is reproducible."""
    counts = column.dropna().astype(str).value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
    return tuple(sorted(v for v, _ in ordered))


def _moments(column: pd.Series) -> tuple[float, float]:
    values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype=np.float64)
    if len(values) == 0:
        return 0.0, 1.0
    std = float(values.std())
    return float(values.mean()), std if std > 0 else 1.0


# --------------------------------------------------------------------------- transforms


def genre_matrix(items: pd.DataFrame, enc: FeatureEncodings) -> np.ndarray:
    """Multi-hot (n_rows, n_genres) float32; genres outside the vocabulary are dropped."""
    position = {g: i for i, g in enumerate(enc.genres)}
    out = np.zeros((len(items), len(enc.genres)), dtype=np.float32)
    for row, genres in enumerate(items["genres"]):
        for g in _as_list(genres):
            col = position.get(str(g))
            if col is not None:
                out[row, col] = 1.0
    return out


def year_buckets(years: pd.Series, enc: FeatureEncodings) -> np.ndarray:
    """Decade index per row (int64): 0 when unknown, clipped to the fitted range."""
    values = pd.to_numeric(years, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.zeros(len(values), dtype=np.int64)
    if enc.year_origin is None:
        return out
    known = ~np.isnan(values)
    bucket = (values[known] - enc.year_origin) // 10 + 1
    out[known] = np.clip(bucket, 1, enc.n_year_buckets - 1).astype(np.int64)
    return out


def user_categorical_matrix(users: pd.DataFrame, enc: FeatureEncodings) -> np.ndarray:
    """(n_rows, n_categorical) int64 indices, 0 for missing or unseen values."""
    out = np.zeros((len(users), len(enc.user_categorical)), dtype=np.int64)
    for col, (name, vocab) in enumerate(enc.user_categorical.items()):
        if name not in users.columns:
            continue
        lookup = {v: i + 1 for i, v in enumerate(vocab)}
        values = users[name].astype(object).where(users[name].notna(), None)
        out[:, col] = [0 if v is None else lookup.get(str(v), UNKNOWN) for v in values]
    return out


def user_numeric_matrix(users: pd.DataFrame, enc: FeatureEncodings) -> np.ndarray:
    """(n_rows, n_numeric) float32 standardised values; missing values become the mean (0)."""
    out = np.zeros((len(users), len(enc.user_numeric)), dtype=np.float32)
    for col, (name, (mean, std)) in enumerate(enc.user_numeric.items()):
        if name not in users.columns:
            continue
        values = pd.to_numeric(users[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        out[:, col] = np.nan_to_num((values - mean) / std, nan=0.0)
    return out


def context_features(timestamps_ns: np.ndarray, known: bool = True) -> np.ndarray:
    """(n, 2) int64: hour of day + 1 and day of week (Monday 0) + 1, in UTC; 0 if unknown."""
    out = np.zeros((len(timestamps_ns), 2), dtype=np.int64)
    if not known:
        return out
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    valid = ts != np.iinfo(np.int64).min  # NaT
    out[valid, 0] = (ts[valid] // _NS_PER_HOUR) % N_HOURS + 1
    out[valid, 1] = (ts[valid] // _NS_PER_DAY + 3) % N_WEEKDAYS + 1  # 1970-01-01 was a Thursday
    return out
