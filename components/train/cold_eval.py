"""The ``cold-items`` protocol's evaluation: items the model never saw, added from their text.

The protocol (:func:`~kuberec.components.evaluation.protocols.cold_items`) withholds
items with all their interactions. :func:`training_dataset` also drops them from the
items table, so the trained model has no index, id embedding or feature row for
them: they are new. :func:`evaluate_cold` then adds them back the way serving adds
an item that arrived after training (text embedding, genres, year through
:func:`~kuberec.components.models.new_items.with_new_items`) and ranks, for every
test user, either the withheld items only (``candidates="cold"``, the item
cold-start ranking of DropoutNet and its successors) or the whole catalogue minus
the user's training items (``"all"``: new items competing with known ones).

Baselines: ``popularity`` scores every withheld item 0 (it has no interactions), so
it can only order them at random; ``random`` scores every candidate at random. Ties
are broken in a seeded random order, drawn per user, for every model, so no model
gains from the order of item ids (MovieLens numbers popular films first).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation import Split, ranking_metrics
from kuberec.components.models import EncodedData, Recommender, score_users, top_k
from kuberec.components.models.new_items import (
    ItemContent,
    encode_content,
    grown_history,
    grown_index,
    has_content,
    reads_content,
    with_new_items,
)
from kuberec.components.models.popularity import Popularity
from kuberec.components.models.recommend import TopK, user_batch
from kuberec.errors import ConfigError

Candidates = Literal["cold", "all"]
BASELINES = ("popularity", "random")


def training_dataset(dataset: Dataset, split: Split) -> Dataset:
    """``dataset`` with the split's training rows and without the withheld items' rows."""
    if not split.withheld_items:
        raise ConfigError(f"protocol {split.protocol!r} withholds no items; use 'cold-items'")
    items = dataset.items[~dataset.items["item_id"].isin(split.withheld_items)]
    return replace(
        dataset, interactions=split.train.reset_index(drop=True), items=items.reset_index(drop=True)
    )


def withheld_rows(dataset: Dataset, split: Split) -> pd.DataFrame:
    """The withheld items' rows of the items table that have text to embed."""
    rows = dataset.items[dataset.items["item_id"].isin(split.withheld_items)]
    return rows[has_content(rows)].reset_index(drop=True)


def new_item_content(dataset: Dataset, split: Split, data: EncodedData) -> ItemContent:
    """The withheld items encoded with the trained data's vocabularies and the text model."""
    from kuberec.components.features.embeddings import embed_items

    rows = withheld_rows(dataset, split)
    return encode_content(rows, data.encodings, embed_items(rows))


def evaluate_cold(
    model: Recommender | str,
    data: EncodedData,
    split: Split,
    content: ItemContent,
    k: int = 10,
    *,
    model_type: str = "",
    hparams: Mapping[str, object] | None = None,
    candidates: Candidates = "cold",
    seed: int = 42,
) -> dict[str, Any]:
    """HR/NDCG@k of the withheld items for ``model`` (or a baseline named in :data:`BASELINES`)."""
    if candidates not in ("cold", "all"):
        raise ConfigError(f"candidates must be 'cold' or 'all', got {candidates!r}")
    rng = np.random.default_rng(seed)
    n, m = data.n_items, len(content)
    index = grown_index(data.item_index, content)
    scorer = _scorer(model, data, content, model_type, hparams or {}, rng)
    truth = split.test[["user_id", "item_id"]]
    user_ids = pd.unique(truth["user_id"])
    users = data.user_index.encode(user_ids, unknown=-1)
    user_ids, users = user_ids[users >= 0], users[users >= 0]
    seen = data.seen  # training items, (n_users, n)
    frames = []
    batch = user_batch(n + m)
    for lo in range(0, len(users), batch):
        chunk = users[lo : lo + batch]
        scores = np.asarray(scorer(chunk), dtype=np.float64)
        exclude = np.zeros((len(chunk), n + m), dtype=bool)
        if candidates == "cold":
            exclude[:, :n] = True
        else:
            exclude[:, :n] = seen[chunk].toarray().astype(bool)
        # Each user's columns in a random order: equal scores are taken in that order.
        order = np.argsort(rng.random(scores.shape), axis=1)
        top = top_k(
            np.take_along_axis(scores, order, axis=1),
            k,
            exclude=np.take_along_axis(exclude, order, axis=1),
        )
        rows = np.arange(len(chunk))[:, None]
        items = np.where(top.items >= 0, order[rows, np.maximum(top.items, 0)], -1)
        ranked = TopK(items, top.scores)
        frames.append(ranked.to_frame(user_ids[lo : lo + len(chunk)], index))
    ranked_all = pd.concat(frames, ignore_index=True)
    metrics = ranking_metrics(ranked_all, truth, k, metrics=("hit_rate", "ndcg", "recall"))
    return {
        "protocol": split.protocol,
        "candidates": candidates,
        "k": k,
        "test_users": len(users),
        "withheld_items": len(split.withheld_items),
        "scored_new_items": m,
        **metrics,
    }


def _scorer(
    model: Recommender | str,
    data: EncodedData,
    content: ItemContent,
    model_type: str,
    hparams: Mapping[str, object],
    rng: np.random.Generator,
) -> Any:
    """users -> (len(users), n + m) scores over the known then the new items."""
    n, m = data.n_items, len(content)
    if model == "random":
        return lambda users: rng.random((len(users), n + m))
    if isinstance(model, str):
        if model != "popularity":
            raise ConfigError(f"unknown baseline {model!r}; valid: {list(BASELINES)}")
        counts = np.concatenate([data.item_counts.astype(np.float64), np.zeros(m)])
        return lambda users: np.broadcast_to(counts, (len(users), n + m))
    if isinstance(model, Popularity):
        return _scorer("popularity", data, content, model_type, hparams, rng)
    if not reads_content(model):
        raise ConfigError(
            f"{model_type or type(model).__name__} scores items by their interactions only and "
            "cannot rank items it never saw; cold-items evaluates models that read item text "
            "(two_tower or dcn trained with text embeddings) and the baselines "
            f"{list(BASELINES)}"
        )
    grown = with_new_items(model, model_type, hparams, content)
    history = grown_history(data.history, m)
    return lambda users: score_users(grown, history, users).float().cpu().numpy()
