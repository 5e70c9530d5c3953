"""The accuracy-diversity curve: one trained model's lists re-ranked at several diversities.

Used by ``kuberec evaluate --ranking diversity=0,0.2,...`` and by
``benchmarks/ranking.py``. Each point is the full-ranking evaluation of the same
scores through the serving stage (:class:`~kuberec.components.models.ranking.Ranker`)
with only ``diversity`` changed: NDCG@K, intra-list diversity over genres (where
the items have them) and over the model's item similarity (what MMR pushes
apart), catalogue coverage and novelty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.api.spec import RankingSpec
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation import (
    Split,
    catalogue_coverage,
    intra_list_diversity,
    multi_hot,
    novelty,
    ranking_metrics,
)
from kuberec.components.models import EncodedData, Recommender
from kuberec.components.models.ranking import ItemSignals, Ranker, model_signals, resolve
from kuberec.components.train.offline_eval import full_ranking

COLUMNS = ("diversity", "ndcg", "ild_genres", "ild_similarity", "coverage", "novelty")


def diversity_curve(
    model: Recommender, data: EncodedData, parts: Split, dataset: Dataset,
    diversities: Sequence[float], *, k: int = 10, base: RankingSpec | None = None,
    users: np.ndarray | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One row per diversity (``COLUMNS``), on ``parts.test`` (or only its ``users``)."""
    truth = parts.test[["user_id", "item_id"]]
    if users is not None:
        truth = truth[truth["user_id"].isin(users)]
    train = parts.train[["user_id", "item_id"]]
    genres = multi_hot(dataset.items)
    signals = model_signals(model, data.history, data.item_genres, data.item_first_seen())
    base = base or RankingSpec()
    rows = []
    for diversity in diversities:
        spec = base.model_copy(update={"diversity": float(diversity)})
        select = Ranker(resolve(spec, data.item_index, signals), signals)
        ranked = full_ranking(model, data, parts.seen("test"), truth["user_id"].unique(), k,
                              select=select)  # fmt: skip
        rows.append({
            "diversity": float(diversity),
            "ndcg": ranking_metrics(ranked, truth, k, metrics=("ndcg",))["ndcg"],
            "ild_genres": (intra_list_diversity(ranked, genres, k) if genres.shape[1] > 1
                           else float("nan")),
            "ild_similarity": similarity_diversity(ranked, data, signals),
            "coverage": catalogue_coverage(ranked, train["item_id"].unique(), k),
            "novelty": novelty(ranked, train, k),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def similarity_diversity(ranked: pd.DataFrame, data: EncodedData, signals: ItemSignals) -> float:
    """1 - mean pairwise item similarity inside each list, averaged over lists of 2+ items."""
    users, items = data.encode_pairs(ranked[["user_id", "item_id"]])
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    values = []
    for chosen in np.split(items, bounds):
        n = len(chosen)
        if n < 2:
            continue
        sims = signals.similarity.between(chosen, chosen)
        values.append(1.0 - (float(sims.sum()) - float(np.trace(sims))) / (n * (n - 1)))
    return float(np.mean(values)) if values else float("nan")


def plot_curves(curves: Mapping[str, pd.DataFrame], path: Path, *, k: int = 10) -> Path:
    """NDCG@K against intra-list diversity, one panel per curve, each point labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), squeeze=False)
    for ax, (name, frame) in zip(axes[0], curves.items(), strict=True):
        ax.plot(frame["ild_similarity"], frame["ndcg"], "o-", label="ILD (item similarity)")
        if frame["ild_genres"].notna().all():
            ax.plot(frame["ild_genres"], frame["ndcg"], "s--", label="ILD (genres)")
        for _, row in frame.iterrows():
            ax.annotate(
                f"{row['diversity']:g}",
                (row["ild_similarity"], row["ndcg"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("intra-list diversity (labels: the diversity weight)")
        ax.set_ylabel(f"NDCG@{k}")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
