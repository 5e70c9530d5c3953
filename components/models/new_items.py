"""Items that arrived after training, scored from their content by the models that read it.

A model reads item content when it looks items up in an :class:`ItemFeatureTable`
(genres, year bucket, text embedding: ``two_tower``'s item tower, ``dcn``) and was
trained with text embeddings. Such a model can score an item it never saw: the
item's content goes into the table and its id embedding is zero, which is what
``two_tower`` learns to handle with ``id_dropout`` (DropoutNet, Volkovs et al.
2017). Every other model scores items by their interactions alone and cannot.

:func:`with_new_items` returns a copy of the model grown by the new items: every
tensor with one row per item gets the new rows appended after the trained items
(and before any padding row), content rows from the items, zeros elsewhere. The
trained weights are untouched, so the old items score exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.models.base import Recommender
from kuberec.components.models.encoded import UserHistory
from kuberec.components.models.feature_tables import ItemFeatureTable
from kuberec.components.models.features import FeatureEncodings, genre_matrix, year_buckets
from kuberec.components.models.registry import create_model


@dataclass(frozen=True)
class ItemContent:
    """New items encoded as a model's item feature table holds them."""

    ids: np.ndarray  # object ids, in row order
    genres: np.ndarray  # (m, n_genres) float32, multi-hot
    year: np.ndarray  # (m,) int64 decade buckets
    text: np.ndarray  # (m, text_dim) float32, L2-normalised

    def __len__(self) -> int:
        return len(self.ids)


def has_content(items: pd.DataFrame) -> np.ndarray:
    """Per row: a title, a free text or at least one genre/category to embed."""
    title = items["title"].fillna("").astype(str).str.strip() != ""
    text = items["text"].fillna("").astype(str).str.strip() != ""
    genres = np.array(
        [
            len(g) > 0 if isinstance(g, list | tuple | np.ndarray) else bool(g)
            for g in items["genres"]
        ],
        dtype=bool,
    )
    return (title | text).to_numpy() | genres


def encode_content(
    items: pd.DataFrame, encodings: FeatureEncodings, text: np.ndarray
) -> ItemContent:
    """``items`` (canonical rows) with their text embeddings ``text`` (rows alike)."""
    return ItemContent(
        ids=items["item_id"].to_numpy(dtype=object),
        genres=genre_matrix(items, encodings),
        year=year_buckets(items["year"], encodings),
        text=np.asarray(text, dtype=np.float32),
    )


def reads_content(model: Recommender) -> bool:
    """Whether ``model`` can score an item from its content (see the module docstring)."""
    return model.schema.text_dim > 0 and any(
        isinstance(m, ItemFeatureTable) for m in model.modules()
    )


def with_new_items(
    model: Recommender, model_type: str, hparams: Mapping[str, object], content: ItemContent
) -> Recommender:
    """A copy of ``model`` that also scores ``content``'s items, as indices n_items.. on."""
    if not reads_content(model):
        raise ValueError(f"{model_type} does not read item text; it cannot score new items")
    n, m = model.schema.n_items, len(content)
    grown = create_model(model_type, replace(model.schema, n_items=n + m), hparams)
    tables = {
        name for name, module in model.named_modules() if isinstance(module, ItemFeatureTable)
    }
    rows = {"genres": _normalised(content.genres), "year": content.year, "text": content.text}
    target = grown.state_dict()
    state = {}
    for key, old in model.state_dict().items():
        if old.shape == target[key].shape:
            state[key] = old
            continue
        owner, _, name = key.rpartition(".")
        new = torch.as_tensor(rows[name]) if owner in tables else torch.zeros((m, *old.shape[1:]))
        state[key] = torch.cat([old[:n], new.to(old.dtype), old[n:]])
    grown.load_state_dict(state)
    return grown.to(model.device).eval()


def grown_index(index: IdIndex, content: ItemContent) -> IdIndex:
    """``index`` with the new ids appended (indices n_items.. on, as :func:`with_new_items`)."""
    return IdIndex(np.concatenate([index.ids, content.ids]).astype(object))


def grown_history(history: UserHistory, n_new: int) -> UserHistory:
    """The same histories, padded with the grown catalogue's padding index."""
    return UserHistory(history.indptr, history.items, history.n_items + n_new)


def _normalised(genres: np.ndarray) -> np.ndarray:
    """Genre weights as :meth:`ItemFeatureTable.attach` stores them (multi-hot / count)."""
    counts = genres.sum(axis=1, keepdims=True)
    return (genres / np.maximum(counts, 1.0)).astype(np.float32)
