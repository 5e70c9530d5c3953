"""Uniform negative sampling for the sampled protocols (NCF, SASRec: 100 per test user).

A negative for a user is an item of the dataset that the user never interacted with,
in any split. Each user's negatives are a uniform sample without replacement, drawn
by rejection from uniform item draws (vectorised over users), with an exact
per-user fallback for users who have seen almost the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from kuberec.errors import ConfigError

_MAX_ROUNDS = 8


def sample_negatives(
    interactions: pd.DataFrame,
    users: Iterable[object],
    n: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """``user_id, item_id`` rows: ``n`` never-interacted items per user (fewer if not enough exist).

    The item universe is every item in ``interactions``, in sorted id order, so the
    sample depends on the seed and the data, never on row order.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the number of negatives must be a positive integer, got {n!r}")
    item_codes, items = pd.factorize(interactions["item_id"], sort=True)
    user_codes, user_index = pd.factorize(interactions["user_id"], sort=True)
    n_items = len(items)
    seen = np.unique(user_codes.astype("int64") * n_items + item_codes)
    targets = user_index.get_indexer(pd.Index(pd.unique(pd.Series(list(users)))))
    targets = np.sort(targets[targets >= 0])
    history = np.bincount(user_codes, minlength=len(user_index))[targets]
    want = np.minimum(n, n_items - history)
    accept = np.maximum((n_items - history) / n_items, 0.05)
    owner, picked = _rejection(rng, targets, want, accept, seen, n_items)
    owner, picked = _complete(rng, targets, want, seen, n_items, owner, picked)
    order = np.lexsort((np.arange(len(owner)), owner))
    return pd.DataFrame(
        {
            "user_id": user_index.to_numpy()[targets[owner[order]]],
            "item_id": items.to_numpy()[picked[order]],
        }
    )


def _rejection(
    rng: np.random.Generator,
    targets: np.ndarray,
    want: np.ndarray,
    accept: np.ndarray,
    seen: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first distinct unseen draws per user: a uniform sample without replacement."""
    owner = np.empty(0, dtype="int64")
    picked = np.empty(0, dtype="int64")
    for _ in range(_MAX_ROUNDS):
        need = want - np.bincount(owner, minlength=len(targets))
        active = np.flatnonzero(need > 0)
        if len(active) == 0:
            break
        draws = np.ceil(need[active] / accept[active] * 1.2).astype("int64") + 4
        new_owner = np.repeat(active, draws)
        new_item = rng.integers(0, n_items, size=int(draws.sum()))
        fresh = ~_in_sorted(seen, targets[new_owner].astype("int64") * n_items + new_item)
        owner, picked = _first_distinct(
            np.r_[owner, new_owner[fresh]], np.r_[picked, new_item[fresh]], want, n_items
        )
    return owner, picked


def _first_distinct(
    owner: np.ndarray, item: np.ndarray, want: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.DataFrame({"owner": owner, "item": item})
    frame = frame[~pd.Series(owner * n_items + item).duplicated().to_numpy()]
    frame = frame[frame.groupby("owner").cumcount().to_numpy() < want[frame["owner"].to_numpy()]]
    return frame["owner"].to_numpy(dtype="int64"), frame["item"].to_numpy(dtype="int64")


def _complete(
    rng: np.random.Generator,
    targets: np.ndarray,
    want: np.ndarray,
    seen: np.ndarray,
    n_items: int,
    owner: np.ndarray,
    picked: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws for users rejection left short: their history is most of the catalogue."""
    need = want - np.bincount(owner, minlength=len(targets))
    extra_owner, extra_item = [owner], [picked]
    for t in np.flatnonzero(need > 0):
        user_seen = seen[(seen >= targets[t] * n_items) & (seen < (targets[t] + 1) * n_items)]
        taken = picked[owner == t]
        free = np.setdiff1d(np.arange(n_items), np.r_[user_seen - targets[t] * n_items, taken])
        chosen = rng.choice(free, size=int(need[t]), replace=False)
        extra_owner.append(np.full(len(chosen), t, dtype="int64"))
        extra_item.append(chosen.astype("int64"))
    return np.concatenate(extra_owner), np.concatenate(extra_item)


def _in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys
