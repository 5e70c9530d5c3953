"""Input coercion shared by every metric: one ranked long frame, whatever the caller passed.

Recommendations arrive either as a DataFrame (``user_id``, ``item_id`` and a ``rank``
or ``score`` column) or as a mapping ``user -> ordered item list``. Everything
downstream works on :func:`top_k`'s output, so ordering and tie rules live here once:

* ``rank`` (ascending) wins over ``score`` (descending) when both are present;
* ties in rank or score are broken by item id, ascending, so results never depend
  on row order;
* a NaN score or rank sorts last;
* a duplicate (user, item) keeps its best position and does not use up a slot.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd

from kuberec.errors import ConfigError, DataError

Recommendations: TypeAlias = pd.DataFrame | Mapping[Hashable, Sequence[Hashable]]

TOP_K_COLUMNS = ("user_id", "item_id", "rank")


def check_k(k: int) -> int:
    """K must be a positive integer; anything else is a configuration mistake."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {missing}; present: {list(frame.columns)}")


def top_k(recommendations: Recommendations, k: int) -> pd.DataFrame:
    """The first ``k`` items of every user's list as ``user_id, item_id, rank`` (1-based).

    Rows come sorted by user id, then by rank. A list shorter
    than ``k`` is kept as it is: metrics decide what a missing slot means.
    """
    k = check_k(k)
    if isinstance(recommendations, pd.DataFrame):
        users, items, key = _from_frame(recommendations)
    elif isinstance(recommendations, Mapping):
        users, items, key = _from_mapping(recommendations)
    else:
        raise DataError(
            "recommendations must be a DataFrame (user_id, item_id, rank or score) or a "
            f"mapping user -> ordered item list, got {type(recommendations).__name__}"
        )
    if len(users) == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in TOP_K_COLUMNS})
    user_codes, _ = pd.factorize(users)
    near_top = _at_most_kth(user_codes, key, k)
    if near_top is not None:
        ranked, repeated = _rank(users[near_top], items[near_top], key[near_top], k)
        if not repeated:
            return ranked
    # No shortcut, or a repeated pair may have taken a slot the shortcut needed.
    return _rank(users, items, key, k)[0]


def _rank(
    users: np.ndarray,
    items: np.ndarray,
    key: np.ndarray,
    k: int,
) -> tuple[pd.DataFrame, bool]:
    """Sort by (user, key, item id), drop repeated pairs, keep ranks <= k; say if any repeated."""
    user_codes, _ = pd.factorize(users, sort=True)
    item_codes, _ = pd.factorize(items, sort=True)
    order = np.lexsort((item_codes, key, user_codes))
    pair = user_codes[order].astype("int64") * (int(item_codes.max()) + 1) + item_codes[order]
    first = ~pd.Series(pair).duplicated().to_numpy()
    order = order[first]
    rank = _rank_within_groups(user_codes[order])
    keep = rank <= k
    rows = order[keep]
    frame = pd.DataFrame(
        {"user_id": users[rows], "item_id": items[rows], "rank": rank[keep].astype("int64")}
    )
    return frame, not first.all()


def _at_most_kth(user_codes: np.ndarray, key: np.ndarray, k: int) -> np.ndarray | None:
    """Rows whose key is within their user's k best (ties included), found in O(n).

    A full sort of a 943 x 1682 score frame costs most of a second; a per-user
    partition on a padded matrix finds the few rows worth sorting. None when there
    is nothing to gain or padding ragged lists would cost too much memory.
    """
    counts = np.bincount(user_codes)
    width = int(counts.max())
    if width <= k or len(counts) * width > 4 * len(user_codes) + 1_000_000:
        return None
    order = np.argsort(user_codes, kind="stable")
    grouped = user_codes[order]
    position = np.arange(len(order)) - (np.cumsum(counts) - counts)[grouped]
    padded = np.full((len(counts), width), np.inf)
    padded[grouped, position] = key[order]
    kth = np.partition(padded, k - 1, axis=1)[:, k - 1]
    return key <= kth[user_codes]


def _from_frame(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    require_columns(frame, ("user_id", "item_id"), "recommendations")
    if "rank" in frame.columns:
        key = frame["rank"].to_numpy(dtype="float64", na_value=np.nan)
    elif "score" in frame.columns:
        key = -frame["score"].to_numpy(dtype="float64", na_value=np.nan)
    else:
        raise DataError(
            "recommendations need a 'rank' (1 = best) or a 'score' (higher = better) column; "
            f"present: {list(frame.columns)}"
        )
    key = np.where(np.isnan(key), np.inf, key)
    return frame["user_id"].to_numpy(), frame["item_id"].to_numpy(), key


def _from_mapping(
    lists: Mapping[Hashable, Sequence[Hashable]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = [len(v) for v in lists.values()]
    users = pd.Series(list(lists.keys())).repeat(lengths).to_numpy()
    items = pd.Series([i for v in lists.values() for i in v]).to_numpy()
    key = np.concatenate([np.arange(n, dtype="float64") for n in lengths] or [np.empty(0)])
    return users, items, key


def _rank_within_groups(sorted_codes: np.ndarray) -> np.ndarray:
    """1-based position of each row inside its run of equal (already sorted) codes."""
    n = len(sorted_codes)
    if n == 0:
        return np.empty(0, dtype="int64")
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n) - run_start + 1


def check_same_id_types(left: pd.DataFrame, right: pd.DataFrame, what: str) -> None:
    """Ids of different kinds (int vs str) never match: say so instead of scoring zero."""
    for column in ("user_id", "item_id"):
        if len(left) == 0 or len(right) == 0:
            continue
        a, b = left[column].dtype, right[column].dtype
        if pd.api.types.is_numeric_dtype(a) != pd.api.types.is_numeric_dtype(b):
            raise DataError(
                f"{what}: {column} is {a} on one side and {b} on the other; ids must have the "
                "same type (datasets.generic.keep_ids keeps integer ids int64, others str)"
            )
