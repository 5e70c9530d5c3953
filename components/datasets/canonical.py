"""The one in-memory form every loader produces and every later step consumes.

Three tables, as pandas DataFrames:

* ``interactions``: ``user_id``, ``item_id``, ``rating`` (float32, NaN where the
  source has no ratings), ``timestamp`` (``datetime64[ns, UTC]``).
* ``items``: ``item_id``, ``title`` (str), ``year`` (nullable Int64),
  ``genres`` (list of str: genres or categories), ``text`` (str, free text).
* ``users``: ``user_id`` plus any attribute columns.

Ids are kept exactly as the source gives them (int64 or str); models work on
dense indices through an :class:`IdIndex`, which is saved next to every model
so predictions map back to the caller's ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.errors import DataError

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
ITEM_COLUMNS = ("item_id", "title", "year", "genres", "text")


@dataclass(frozen=True)
class Dataset:
    """Interactions, items and users of one source, validated on construction."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    has_ratings: bool = True
    has_timestamps: bool = True
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_columns(self.interactions, INTERACTION_COLUMNS, f"{self.name} interactions")
        _require_columns(self.items, ITEM_COLUMNS, f"{self.name} items")
        _require_columns(self.users, ("user_id",), f"{self.name} users")
        if self.interactions.empty:
            raise DataError(f"{self.name}: no interactions; the input holds no usable rows")

    def with_interactions(self, interactions: pd.DataFrame) -> Dataset:
        """The same catalogue and users with other interactions (a split's train part)."""
        return replace(self, interactions=interactions.reset_index(drop=True))

    @property
    def n_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    @property
    def n_items(self) -> int:
        return int(self.interactions["item_id"].nunique())

    def summary(self) -> dict[str, object]:
        """The figures a person checks first: sizes, density, time range."""
        ts = self.interactions["timestamp"]
        n_u, n_i, n = self.n_users, self.n_items, len(self.interactions)
        return {
            "dataset": self.name,
            "interactions": n,
            "users": n_u,
            "items": n_i,
            "catalogue": len(self.items),
            "density": round(n / max(1, n_u * n_i), 6),
            "first": ts.min().isoformat() if self.has_timestamps else None,
            "last": ts.max().isoformat() if self.has_timestamps else None,
        }


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {missing}; present: {list(frame.columns)}")


def empty_items(item_ids: Iterable[object] = ()) -> pd.DataFrame:
    """An items table with only ids: what a source without item metadata gets."""
    ids = list(item_ids)
    return pd.DataFrame(
        {
            "item_id": ids,
            "title": [""] * len(ids),
            "year": pd.array([pd.NA] * len(ids), dtype="Int64"),
            "genres": [[] for _ in ids],
            "text": [""] * len(ids),
        }
    )


@dataclass(frozen=True)
class IdIndex:
    """A bijection between the caller's ids and dense indices 0..n-1."""

    ids: np.ndarray

    @classmethod
    def fit(cls, values: Iterable[object]) -> IdIndex:
        """Dense indices in sorted id order, so the same ids always map the same way."""
        unique = pd.unique(pd.Series(list(values) if not isinstance(values, pd.Series) else values))
        return cls(np.array(sorted((_as_key(v) for v in unique), key=_sort_key), dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def _lookup(self) -> dict[object, int]:
        cache = self.__dict__.get("_lookup_cache")
        if cache is None:
            cache = {v: i for i, v in enumerate(self.ids.tolist())}
            object.__setattr__(self, "_lookup_cache", cache)
        return cache

    def encode(self, values: Iterable[object], *, unknown: int | None = None) -> np.ndarray:
        """Dense indices for ids; unknown ids raise unless ``unknown`` gives a stand-in."""
        lookup = self._lookup
        result: list[int] = []
        for v in values:
            i = lookup.get(_as_key(v))
            if i is None:
                if unknown is None:
                    raise DataError(f"unknown id {v!r}: it was not in the training data")
                i = unknown
            result.append(i)
        return np.asarray(result, dtype=np.int64)

    def find(self, value: object) -> int:
        """Dense index of an id (-1: unknown), matching ``"1"`` to 1 and 1 to ``"1"``.

        JSON clients and command lines send ids either way; the index keeps them as
        the data had them (ints, or strings when any id was not a plain integer).
        ``"007"`` is never 7.
        """
        found = self._lookup.get(_as_key(value))
        if found is not None:
            return found
        alternative: object | None = None
        if isinstance(value, str):
            text = value.strip()
            if text.lstrip("-").isdigit() and text == str(int(text)):
                alternative = int(text)
        elif isinstance(value, int | np.integer) and not isinstance(value, bool):
            alternative = str(value)
        if alternative is None:
            return -1
        return self._lookup.get(alternative, -1)

    def decode(self, indices: Iterable[int]) -> list[object]:
        return [self.ids[int(i)] for i in indices]

    def save(self, path: Path) -> None:
        """Written as JSON so any tool (and a person) can read the mapping."""
        kind = "int" if all(isinstance(v, (int, np.integer)) for v in self.ids) else "str"
        payload = {"kind": kind, "ids": [int(v) if kind == "int" else str(v) for v in self.ids]}
        path.write_text(json.dumps(payload))

    @classmethod
    def load(cls, path: Path) -> IdIndex:
        payload = json.loads(path.read_text())
        return cls(np.array(payload["ids"], dtype=object))


def _as_key(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    return value


def _sort_key(value: object) -> tuple[int, object]:
    if isinstance(value, (int, np.integer)):
        return (0, int(value))
    return (1, str(value))
