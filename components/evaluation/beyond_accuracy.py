"""Beyond-accuracy figures of the top-K lists: coverage, novelty, diversity, popularity bias.

They need no ground truth, so every user with a list counts, not only test users.
Popularity is always measured on the training interactions, the only history a
model could have learnt from.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from kuberec.components.evaluation._frames import Recommendations, require_columns, top_k
from kuberec.errors import DataError


def catalogue_coverage(
    recommendations: Recommendations, catalogue: Iterable[object], k: int
) -> float:
    """Share of the catalogue that appears in at least one top-K list.

    Shani & Gunawardana (2010) "catalog coverage"; MS Recommenders' ``catalog_coverage``
    uses the training items as the catalogue, so pass ``train["item_id"]`` to match it.
    Recommended items outside the catalogue are ignored, so the figure stays in [0, 1].
    """
    items = pd.Index(pd.Series(list(catalogue))).unique()
    if len(items) == 0:
        raise DataError("catalogue is empty; pass the item ids the model may recommend")
    shown = pd.unique(top_k(recommendations, k)["item_id"])
    return float(items.isin(shown).sum() / len(items))


def novelty(recommendations: Recommendations, train: pd.DataFrame, k: int) -> float:
    """Mean self-information -log2 p(i) of the recommended items, over all top-K slots.

    p(i) = interactions with i / all training interactions: the "item choice" model
    of Castells, Vargas & Wang (ECIR 2011), as MS Recommenders' ``novelty``. Items
    absent from training have no defined p(i) and are left out of the mean (MS
    Recommenders counts them as 0 in its denominator).
    """
    require_columns(train, ("item_id",), "train")
    top = top_k(recommendations, k)
    p = train["item_id"].value_counts() / len(train)
    known = p.reindex(top["item_id"]).dropna()
    if known.empty:
        return float("nan")
    return float((-np.log2(known.to_numpy())).mean())


def average_popularity(recommendations: Recommendations, train: pd.DataFrame, k: int) -> float:
    """ARP: mean over users of the mean training-interaction count of their top-K items.

    Abdollahpouri et al. (2019); an item never seen in training has popularity 0.
    """
    require_columns(train, ("item_id",), "train")
    top = top_k(recommendations, k)
    if top.empty:
        return float("nan")
    counts = train["item_id"].value_counts()
    popularity = counts.reindex(top["item_id"]).fillna(0.0).to_numpy()
    return float(pd.Series(popularity).groupby(top["user_id"].to_numpy()).mean().mean())


def intra_list_diversity(
    recommendations: Recommendations, item_features: pd.DataFrame, k: int
) -> float:
    """1 - mean pairwise cosine similarity inside each top-K list, averaged over users.

    Ziegler et al. (2005) intra-list similarity, turned into diversity as in MS
    Recommenders' ``diversity`` with ``item_feature_vector``. ``item_features`` is
    indexed by item id (or has an ``item_id`` column) with numeric columns. A zero
    vector has similarity 0 to everything. Lists with fewer than two items have no
    pairs and are left out.
    """
    features = _feature_matrix(item_features)
    top = top_k(recommendations, k)
    if top.empty:
        return float("nan")
    rows = features.index.get_indexer(top["item_id"])
    if (rows < 0).any():
        missing = pd.unique(top["item_id"].to_numpy()[rows < 0])[:5].tolist()
        raise DataError(f"item_features has no row for recommended item(s) {missing}")
    unit = _unit_rows(features.to_numpy(dtype="float64"))[rows]
    users = top["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, len(users)])
    summed = np.add.reduceat(unit, starts, axis=0)
    self_sim = np.add.reduceat((unit * unit).sum(axis=1), starts)
    pairs = sizes * (sizes - 1) / 2.0
    listed = pairs > 0
    if not listed.any():
        return float("nan")
    # Σ_{a<b} v_a·v_b = (|Σ v|² - Σ |v|²) / 2 for the unit vectors v of one list.
    pair_sim = ((summed * summed).sum(axis=1) - self_sim) / 2.0
    return float((1.0 - pair_sim[listed] / pairs[listed]).mean())


def multi_hot(items: pd.DataFrame, column: str = "genres") -> pd.DataFrame:
    """Item features from a list column (the canonical items' ``genres``), one 0/1 column each."""
    require_columns(items, ("item_id", column), "items")
    exploded = items[["item_id", column]].explode(column).dropna()
    table = pd.crosstab(exploded["item_id"], exploded[column]).clip(upper=1)
    return table.reindex(pd.unique(items["item_id"]), fill_value=0).astype("float64")


def _feature_matrix(item_features: pd.DataFrame) -> pd.DataFrame:
    frame = (
        item_features.set_index("item_id") if "item_id" in item_features.columns else item_features
    )
    numeric = frame.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise DataError(
            "item_features has no numeric columns; give one row per item id with numeric "
            "feature columns (multi_hot(items) builds them from genres)"
        )
    if not numeric.index.is_unique:
        raise DataError("item_features has duplicate item ids; keep one row per item")
    return numeric


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
