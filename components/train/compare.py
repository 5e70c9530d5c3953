"""Champion and challenger scored on the same holdout, so the gate compares like with like.

Both rank all items minus the holdout's training interactions. Holdout rows the
champion was trained on (possible when the protocol is random and the data
grew) are dropped for both models and reported, since they would flatter the
champion. Users a model has never seen count as misses for that model: in
serving they would get the popularity fallback. Both lists go through the job's
re-ranking stage (``spec.serving.ranking``), as they would be served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kuberec.api.names import METRICS
from kuberec.api.spec import RankingSpec
from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.evaluation import Split, ranking_metrics
from kuberec.components.models import UserHistory
from kuberec.components.models.encoded import encode_pairs
from kuberec.components.models.persistence import LoadedModel
from kuberec.components.models.ranking import Ranker, model_signals, resolve
from kuberec.components.train.offline_eval import full_ranking


@dataclass(frozen=True)
class _Indexed:
    """What full ranking needs from a model's data: id mappings and histories."""

    user_index: IdIndex
    item_index: IdIndex
    history: UserHistory

    @property
    def n_users(self) -> int:
        return len(self.user_index)

    @property
    def n_items(self) -> int:
        return len(self.item_index)

    def encode_pairs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return encode_pairs(self.user_index, self.item_index, frame)


@dataclass(frozen=True)
class Comparison:
    challenger: dict[str, float]
    champion: dict[str, float] | None
    holdout_rows: int
    dropped_rows: int  # holdout rows the champion trained on

    def to_dict(self) -> dict[str, Any]:
        return {
            "challenger": self.challenger,
            "champion": self.champion,
            "holdout_rows": self.holdout_rows,
            "dropped_rows": self.dropped_rows,
        }


def compare(
    challenger: LoadedModel,
    champion: LoadedModel | None,
    split: Split,
    k: int,
    ranking: RankingSpec | None = None,
) -> Comparison:
    truth = split.test[["user_id", "item_id"]].reset_index(drop=True)
    dropped = 0
    if champion is not None:
        trained = _trained_on(champion, truth)
        dropped = int(trained.sum())
        truth = truth[~trained].reset_index(drop=True)
    seen = split.seen("test")
    scores = {"challenger": score(challenger, truth, seen, k, ranking)}
    if champion is not None:
        scores["champion"] = score(champion, truth, seen, k, ranking)
    return Comparison(scores["challenger"], scores.get("champion"), len(truth), dropped)


def score(
    model: LoadedModel,
    truth: pd.DataFrame,
    seen: pd.DataFrame,
    k: int,
    ranking: RankingSpec | None = None,
) -> dict[str, float]:
    """``metric@k`` values of one model over the holdout's users (unknown users: misses)."""
    if truth.empty:
        return {f"{m}@{k}": 0.0 for m in METRICS}
    data = _Indexed(model.user_index, model.item_index, model.history)
    signals = model_signals(model.model, model.history, model.item_genres, model.item_first_seen)
    select = Ranker(
        resolve(ranking or RankingSpec(), model.item_index, signals, strict=False), signals
    )
    ranked = full_ranking(model.model, data, seen, truth["user_id"].unique(), k, select=select)
    values = ranking_metrics(ranked, truth, k, metrics=METRICS)
    return {f"{name}@{k}": round(float(v), 6) for name, v in values.items()}


def _trained_on(model: LoadedModel, pairs: pd.DataFrame) -> np.ndarray:
    users, items = encode_pairs(model.user_index, model.item_index, pairs)
    hit = np.zeros(len(pairs), dtype=bool)
    for row in np.flatnonzero((users >= 0) & (items >= 0)):
        hit[row] = items[row] in model.history.of(int(users[row]))
    return hit
