"""Accuracy metrics at K over ranked lists, plus AUC for a scorer.

Definitions (binary relevance: an item is relevant when the (user, item) pair is in
the ground truth). For a user with relevant set R and top-K list L (|L| <= K),
with hits at 1-based positions p_1 < p_2 < ...:

* precision@K = |L ∩ R| / K. Divided by K even when the list is shorter, as in
  Microsoft Recommenders' ``precision_at_k`` (and Spark's ``precisionAt``).
* recall@K    = |L ∩ R| / |R|.
* NDCG@K      = DCG / IDCG with DCG = Σ_j 1 / log2(p_j + 1) and IDCG the DCG of
  min(K, |R|) hits at positions 1.. (MS Recommenders ``ndcg_at_k`` with
  ``score_type="binary"``; its ``discfun_type`` cancels out in the ratio).
* MAP@K       = Σ_j (j / p_j) / D, the precision at each hit averaged over a
  denominator D. D = |R| by default: MS Recommenders' ``map``, which is what its
  MovieLens benchmark table reports as "MAP" (the function was called ``map_at_k``
  until recommenders-team/recommenders#1702 renamed it). ``map_denominator="capped"``
  gives D = min(K, |R|): MS Recommenders' current ``map_at_k``.
* hit rate@K  = 1 if |L ∩ R| > 0 else 0.
* MRR@K       = 1 / p_1, or 0 without a hit.

Averaging: over the users of the ground truth, i.e. users with at least one relevant
item; users without relevant items are excluded (recall, NDCG and MAP are undefined
for them). A ground-truth user with no recommendation list scores 0 on everything,
as in MS Recommenders' ``ndcg_at_k``; its precision, recall and MAP drop such users
instead. The figures agree whenever every test user gets a list, as in its benchmark.

Ordering: see :mod:`._frames` (rank ascending, else score descending; ties by item id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from kuberec.api.names import METRICS
from kuberec.components.evaluation._frames import (
    Recommendations,
    check_k,
    check_same_id_types,
    require_columns,
    top_k,
)
from kuberec.errors import ConfigError, DataError

MapDenominator = Literal["relevant", "capped"]
#: The metrics computed here are the contract's (``evaluation.metric``), named once there.
RANKING_METRICS = METRICS


@dataclass(frozen=True)
class RankedHits:
    """Where each ground-truth user's hits fall in their top-K list.

    Every metric is a function of these arrays alone, so the join happens once.
    ``hit_user`` indexes ``users``; ``hit_rank`` is 1-based; rows are sorted by
    (user, rank).
    """

    users: pd.Index
    n_relevant: np.ndarray
    hit_user: np.ndarray
    hit_rank: np.ndarray
    k: int

    @property
    def n_hits(self) -> np.ndarray:
        return np.bincount(self.hit_user, minlength=len(self.users))


def ranked_hits(recommendations: Recommendations, truth: pd.DataFrame, k: int) -> RankedHits:
    """Join the top-K lists with the ground truth (``user_id``, ``item_id``; duplicates ignored)."""
    k = check_k(k)
    require_columns(truth, ("user_id", "item_id"), "ground truth")
    relevant = truth[["user_id", "item_id"]].drop_duplicates()
    n_relevant = relevant.groupby("user_id", sort=True).size()
    users = n_relevant.index
    top = top_k(recommendations, k)
    check_same_id_types(top, relevant, "recommendations vs ground truth")
    hits = top.merge(relevant, on=["user_id", "item_id"], how="inner")
    hit_user = users.get_indexer(hits["user_id"])
    hit_rank = hits["rank"].to_numpy(dtype="int64")
    order = np.lexsort((hit_rank, hit_user))
    return RankedHits(
        users=users,
        n_relevant=n_relevant.to_numpy(dtype="int64"),
        hit_user=hit_user[order].astype("int64"),
        hit_rank=hit_rank[order],
        k=k,
    )


def per_user_metrics(
    recommendations: Recommendations,
    truth: pd.DataFrame,
    k: int,
    *,
    map_denominator: MapDenominator = "relevant",
) -> pd.DataFrame:
    """One row per ground-truth user: ``user_id, n_relevant`` and every metric at K."""
    return _per_user(ranked_hits(recommendations, truth, k), map_denominator)


def ranking_metrics(
    recommendations: Recommendations,
    truth: pd.DataFrame,
    k: int,
    *,
    metrics: Sequence[str] = RANKING_METRICS,
    map_denominator: MapDenominator = "relevant",
) -> dict[str, float]:
    """Mean of each metric over ground-truth users, computing the join only once."""
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; valid: {list(RANKING_METRICS)}")
    table = per_user_metrics(recommendations, truth, k, map_denominator=map_denominator)
    return {m: _mean(table[m]) for m in metrics}


def precision_at_k(recommendations: Recommendations, truth: pd.DataFrame, k: int) -> float:
    return ranking_metrics(recommendations, truth, k, metrics=["precision"])["precision"]


def recall_at_k(recommendations: Recommendations, truth: pd.DataFrame, k: int) -> float:
    return ranking_metrics(recommendations, truth, k, metrics=["recall"])["recall"]


def ndcg_at_k(recommendations: Recommendations, truth: pd.DataFrame, k: int) -> float:
    return ranking_metrics(recommendations, truth, k, metrics=["ndcg"])["ndcg"]


def map_at_k(
    recommendations: Recommendations,
    truth: pd.DataFrame,
    k: int,
    *,
    denominator: MapDenominator = "relevant",
) -> float:
    """MAP@K; ``denominator`` picks |R| (MS benchmark "MAP") or min(K, |R|)."""
    result = ranking_metrics(
        recommendations, truth, k, metrics=["map"], map_denominator=denominator
    )
    return result["map"]


def hit_rate_at_k(recommendations: Recommendations, truth: pd.DataFrame, k: int) -> float:
    return ranking_metrics(recommendations, truth, k, metrics=["hit_rate"])["hit_rate"]


def mrr_at_k(recommendations: Recommendations, truth: pd.DataFrame, k: int) -> float:
    return ranking_metrics(recommendations, truth, k, metrics=["mrr"])["mrr"]


def _per_user(hits: RankedHits, map_denominator: MapDenominator) -> pd.DataFrame:
    if map_denominator not in ("relevant", "capped"):
        raise ConfigError(
            f"map_denominator must be 'relevant' or 'capped', got {map_denominator!r}"
        )
    k, n_users, n_rel = hits.k, len(hits.users), hits.n_relevant
    n_hits = hits.n_hits
    gain = 1.0 / np.log2(hits.hit_rank + 1.0)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(k, n_rel) - 1]
    reciprocal = np.zeros(n_users)
    np.maximum.at(reciprocal, hits.hit_user, 1.0 / hits.hit_rank)
    map_den = n_rel if map_denominator == "relevant" else np.minimum(k, n_rel)
    return pd.DataFrame(
        {
            "user_id": hits.users.to_numpy(),
            "n_relevant": n_rel,
            "precision": n_hits / k,
            "recall": n_hits / n_rel,
            "ndcg": np.bincount(hits.hit_user, weights=gain, minlength=n_users) / ideal,
            "map": _precision_at_hits_sum(hits) / map_den,
            "hit_rate": (n_hits > 0).astype("float64"),
            "mrr": reciprocal,
        }
    )


def _precision_at_hits_sum(hits: RankedHits) -> np.ndarray:
    """Σ_j j / p_j per user: the j-th hit's precision at its position."""
    n = len(hits.hit_user)
    if n == 0:
        return np.zeros(len(hits.users))
    starts = np.flatnonzero(np.r_[True, hits.hit_user[1:] != hits.hit_user[:-1]])
    nth_hit = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) + 1
    return np.bincount(hits.hit_user, weights=nth_hit / hits.hit_rank, minlength=len(hits.users))


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


def auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative).

    Ties between a positive and a negative count 1/2 (Mann-Whitney U with mid-ranks),
    so a constant scorer gets exactly 0.5.
    """
    s = np.asarray(scores, dtype="float64")
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise DataError(f"scores and labels must be 1-d and equally long, got {s.shape}, {y.shape}")
    if np.isnan(s).any():
        raise DataError("scores contain NaN; score every candidate before computing AUC")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"AUC needs positives and negatives; got {n_pos} and {n_neg}")
    ranks = _mid_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mid = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mid, ends - starts)
    return ranks


def mean_user_auc(scored: pd.DataFrame) -> float:
    """AUC per user over ``user_id, score, label`` rows, averaged over users.

    The sampled protocols' figure (NCF, SASRec evaluate each user's positive against
    its own negatives). Users whose candidates are all positive or all negative have
    no AUC and are excluded.
    """
    require_columns(scored, ("user_id", "score", "label"), "scored candidates")
    frame = scored[["user_id", "score", "label"]].copy()
    frame["label"] = frame["label"].astype(bool)
    if frame["score"].isna().any():
        raise DataError("scores contain NaN; score every candidate before computing AUC")
    grouped = frame.groupby("user_id")
    rank = grouped["score"].rank(method="average")
    pos = grouped["label"].sum().astype("float64")
    neg = grouped.size() - pos
    rank_sum = rank.where(frame["label"], 0.0).groupby(frame["user_id"]).sum()
    valid = (pos > 0) & (neg > 0)
    if not valid.any():
        raise DataError("no user has both positive and negative candidates; AUC is undefined")
    p, n, r = pos[valid], neg[valid], rank_sum[valid]
    return float(((r - p * (p + 1) / 2) / (p * n)).mean())
