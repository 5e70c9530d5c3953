"""Early-stopping validation: a per-user holdout carved from the training data only.

The holdout never touches the evaluation protocol's test split, so stopping
decisions cannot leak test information into the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation import ranking_metrics, split
from kuberec.components.models import EncodedData, Recommender, recommend


@dataclass(frozen=True)
class Holdout:
    """Validation pairs as dense indices (users, items) of the model's training data."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def carve_holdout(
    dataset: Dataset, fraction: float, seed: int, *, last: bool = False
) -> tuple[Dataset, pd.DataFrame]:
    """(the dataset to fit on, the held-out interactions); fraction 0 holds nothing out.

    ``last``: hold out each user's most recent interaction instead of a random
    ``fraction`` (next-item models: a random share would cut items out of the middle
    of the sequences they learn from, and validate on items that are not next).
    """
    if fraction <= 0:
        return dataset, dataset.interactions.iloc[:0]
    if last and dataset.has_timestamps:
        parts = split("leave-one-out", dataset.interactions, seed=seed, valid=False)
    else:
        parts = split("stratified", dataset.interactions, seed=seed, ratio=1 - fraction)
    fit = Dataset(
        dataset.name,
        parts.train.reset_index(drop=True),
        dataset.items,
        dataset.users,
        has_ratings=dataset.has_ratings,
        has_timestamps=dataset.has_timestamps,
        meta=dataset.meta,
    )
    return fit, parts.test


def encode_holdout(data: EncodedData, frame: pd.DataFrame) -> Holdout:
    users, items = data.encode_pairs(frame)
    known = (users >= 0) & (items >= 0)
    return Holdout(users[known], items[known])


def validate(model: Recommender, data: EncodedData, holdout: Holdout, k: int) -> dict[str, float]:
    """Ranking metrics@k of ``model`` on the holdout, excluding the fit data's items."""
    if len(holdout) == 0:
        return {}
    users = np.unique(holdout.users)
    top = recommend(model, data.history, users, k)
    ranked = pd.DataFrame(
        {
            "user_id": np.repeat(users, top.items.shape[1]),
            "item_id": top.items.reshape(-1),
            "rank": np.tile(np.arange(1, top.items.shape[1] + 1), len(users)),
        }
    )
    ranked = ranked[ranked["item_id"] >= 0]
    truth = pd.DataFrame({"user_id": holdout.users, "item_id": holdout.items})
    return ranking_metrics(ranked, truth, k)
