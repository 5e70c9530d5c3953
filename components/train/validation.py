"""Validation carved from the training data only: early stopping and ``auto``'s choice.

The holdout never touches the evaluation protocol's test split, so stopping and
selection decisions cannot leak test information into the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation import per_user_metrics, ranking_metrics, split
from kuberec.components.models import EncodedData, Recommender, recommend
from kuberec.errors import DataError


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
    return dataset.with_interactions(parts.train), parts.test


#: Protocols whose test part is each user's latest interaction.
LATEST_ITEM_PROTOCOLS = ("leave-one-out", "leave-one-out-sampled")


def validation_rule(protocol: str | None, has_timestamps: bool) -> str:
    """How :func:`carve_validation` holds out for ``protocol``: "temporal", "latest", "random".

    A rule needing order falls back to "random" on data without timestamps.
    """
    if has_timestamps and protocol == "temporal":
        return "temporal"
    if has_timestamps and protocol in LATEST_ITEM_PROTOCOLS:
        return "latest"
    return "random"


def carve_validation(
    dataset: Dataset, protocol: str | None, fraction: float, seed: int
) -> tuple[Dataset, pd.DataFrame]:
    """(fit part, validation) of a protocol's training part, held out the way it tests.

    A model chosen on a random holdout is chosen for a random split (ml-100k: EASE-T
    wins there and loses to EASE on a temporal one), so validation mirrors the protocol
    (components/evaluation/protocols.py): ``temporal`` cuts the training part again at
    its own ``1 - fraction`` timestamp quantile (validation is later than every fit
    interaction, from users and items seen before the cut); leave-one-out protocols hold
    out each user's latest interaction (as sequence models stop early); any other
    protocol, or ``None``, a random ``fraction`` per user.
    """
    rule = validation_rule(protocol, dataset.has_timestamps)
    if rule == "latest":
        return carve_holdout(dataset, fraction, seed, last=True)
    if rule == "random" or fraction <= 0:
        return carve_holdout(dataset, fraction, seed)
    try:
        parts = split("temporal", dataset.interactions, seed=seed, quantile=1 - fraction)
    except DataError:
        raise DataError(
            f"temporal validation: no interaction in the latest {fraction:.0%} of the "
            "training part comes from a user and item seen before it; raise "
            "training.validationFraction or use more data"
        ) from None
    return dataset.with_interactions(parts.train), parts.test


def encode_holdout(data: EncodedData, frame: pd.DataFrame) -> Holdout:
    users, items = data.encode_pairs(frame)
    known = (users >= 0) & (items >= 0)
    return Holdout(users[known], items[known])


def validate(model: Recommender, data: EncodedData, holdout: Holdout, k: int) -> dict[str, float]:
    """Ranking metrics@k of ``model`` on the holdout, excluding the fit data's items."""
    if len(holdout) == 0:
        return {}
    return ranking_metrics(*_ranked(model, data, holdout, k), k)


def validate_per_user(
    model: Recommender, data: EncodedData, holdout: Holdout, k: int
) -> pd.DataFrame:
    """:func:`validate`'s metrics per holdout user, one row each in user order."""
    return per_user_metrics(*_ranked(model, data, holdout, k), k)


def _ranked(
    model: Recommender, data: EncodedData, holdout: Holdout, k: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the top-k lists of the holdout's users, the holdout as ground truth)."""
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
    return ranked, truth
