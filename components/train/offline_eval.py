"""Score a trained model on a protocol's test split: accuracy, beyond-accuracy, slices.

Full-ranking protocols rank every item minus what the protocol says the user has
seen (train, and valid where there is one). Sampled protocols rank each test
target among its sampled negatives (the NCF/SASRec convention). ``select`` turns
scores into lists: the plain top-K, or the serving job's re-ranking stage
(:class:`~kuberec.components.models.ranking.Ranker`), so what is measured is what
is served.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation import (
    Split,
    average_popularity,
    catalogue_coverage,
    intra_list_diversity,
    multi_hot,
    novelty,
    ranking_metrics,
    slice_report,
)
from kuberec.components.models import EncodedData, Recommender, score_users, top_k
from kuberec.components.models.recommend import Select, user_batch


def evaluate_split(
    model: Recommender,
    data: EncodedData,
    split: Split,
    dataset: Dataset,
    k: int = 10,
    *,
    select: Select = top_k,
) -> dict[str, Any]:
    """Metrics of ``model`` (trained on ``split.train``, encoded as ``data``) on the test split."""
    truth = split.test[["user_id", "item_id"]]
    if split.ranking == "sampled":
        ranked = _rank_candidates(model, data, split.candidates("test"))
    else:
        ranked = full_ranking(
            model, data, split.seen("test"), truth["user_id"].unique(), k, select=select
        )
    result: dict[str, Any] = {
        "protocol": split.protocol,
        "k": k,
        "test_users": int(truth["user_id"].nunique()),
        **ranking_metrics(ranked, truth, k),
    }
    if split.ranking == "full":
        train = split.train[["user_id", "item_id"]]
        result["coverage"] = catalogue_coverage(ranked, train["item_id"].unique(), k)
        result["novelty"] = novelty(ranked, train, k)
        result["average_popularity"] = average_popularity(ranked, train, k)
        features = multi_hot(dataset.items)
        if features.shape[1] > 1:
            result["intra_list_diversity"] = intra_list_diversity(ranked, features, k)
        slices = slice_report(ranked, truth, train, k)
        result["slices"] = slices.to_dict(orient="records")
    return result


def full_ranking(
    model: Recommender,
    data: EncodedData,
    seen: pd.DataFrame,
    user_ids: np.ndarray,
    k: int,
    *,
    select: Select = top_k,
) -> pd.DataFrame:
    """Top-K ``user_id, item_id, score, rank`` for known users, excluding ``seen`` pairs."""
    users = data.user_index.encode(user_ids, unknown=-1)
    user_ids, users = np.asarray(user_ids, dtype=object)[users >= 0], users[users >= 0]
    mask = _pairs_matrix(data, seen)
    frames = []
    batch = user_batch(data.n_items)
    for lo in range(0, len(users), batch):
        chunk = users[lo : lo + batch]
        top = select(score_users(model, data.history, chunk), k, exclude=mask[chunk])
        frames.append(top.to_frame(user_ids[lo : lo + batch], data.item_index))
    return pd.concat(frames, ignore_index=True)


def _pairs_matrix(data: EncodedData, pairs: pd.DataFrame) -> sp.csr_matrix:
    users, items = data.encode_pairs(pairs)
    known = (users >= 0) & (items >= 0)
    values = np.ones(int(known.sum()), dtype=bool)
    shape = (data.n_users, data.n_items)
    return sp.csr_matrix((values, (users[known], items[known])), shape=shape)


@torch.no_grad()
def _rank_candidates(
    model: Recommender, data: EncodedData, candidates: pd.DataFrame
) -> pd.DataFrame:
    """Each user's candidates (target + negatives) scored and ranked by the model."""
    users, items = data.encode_pairs(candidates)
    known = (users >= 0) & (items >= 0)
    frame = candidates[known].reset_index(drop=True)
    users, items = users[known], items[known]
    scores = np.empty(len(frame), dtype=np.float64)
    unique_users, inverse = np.unique(users, return_inverse=True)
    batch = user_batch(data.n_items)
    for lo in range(0, len(unique_users), batch):
        chunk = unique_users[lo : lo + batch]
        table = score_users(model, data.history, chunk).float().cpu().numpy()
        rows = np.flatnonzero((inverse >= lo) & (inverse < lo + len(chunk)))
        scores[rows] = table[inverse[rows] - lo, items[rows]]
    return frame.assign(score=scores)[["user_id", "item_id", "score"]]
