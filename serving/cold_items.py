"""New items at serving time: items in the item source that the model was not trained on.

When an engine loads, the item source is read again: ``$KUBEREC_ITEMS`` (an items
file, CSV or Parquet, in the format of ``data.items``) or else the job's own
``data.items`` file named in the run's ``config.json``. Every item there that the
model does not know is a new item. For a model that reads item text
(:func:`~kuberec.components.models.new_items.reads_content`: ``two_tower``, ``dcn``
trained with text embeddings) each new item with a title, text or category is
embedded with the same text model as training and appended to the model, so
``/recommend`` and ``/score`` can return it and ``/similar`` answers for it (by
embedding cosine; ``two_tower`` only). Every other new item is skipped with a
one-line reason, which ``/similar`` gives back (422): it is never recommended until
a retrained model has it. A source that cannot be read is logged and skipped:
serving never fails over new items.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kuberec.components.models import LoadedModel
from kuberec.components.models.new_items import (
    ItemContent,
    encode_content,
    grown_history,
    grown_index,
    has_content,
    reads_content,
    with_new_items,
)

if TYPE_CHECKING:
    from kuberec.serving.engine import Engine

log = logging.getLogger(__name__)

ITEMS_ENV = "KUBEREC_ITEMS"
UNKNOWN = "it is neither in the training data nor in the item source"


@dataclass(frozen=True)
class NewItems:
    """What loading found: the items added (in index order after the trained ones), the skipped."""

    added: tuple[object, ...] = ()
    titles: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # str(item id) -> why

    def titled(self, titles: list[str]) -> list[str]:
        """``titles`` (the grown catalogue's) with the new items' own titles at the end."""
        if self.added:
            titles[len(titles) - len(self.added) :] = list(self.titles)
        return titles

    def reason(self, item_id: object) -> str:
        return self.skipped.get(str(item_id), UNKNOWN)


def item_source(model_root: Path) -> Path | None:
    """``$KUBEREC_ITEMS``, else the run's ``data.items`` file; None when there is none."""
    named = os.environ.get(ITEMS_ENV, "").strip()
    if named:
        return Path(named.removeprefix("file://"))
    config = Path(model_root) / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text()).get("data", {})
    items = data.get("spec", data).get("items")
    if isinstance(items, dict) and isinstance(items.get("uri"), str):
        return Path(items["uri"].removeprefix("file://"))
    return None


def add_new_items(loaded: LoadedModel, model_root: Path) -> tuple[LoadedModel, NewItems]:
    """``loaded`` grown by the item source's new items (unchanged when there are none)."""
    path = item_source(model_root)
    if path is None:
        return loaded, NewItems()
    try:
        from kuberec.components.datasets.generic import read_items

        items = read_items(path)
    except Exception as exc:  # new items are an extra: never fail serving over them
        log.warning("item source %s unreadable (%s); no new items served", path, exc)
        return loaded, NewItems()
    return grow(loaded, items)


def grow(loaded: LoadedModel, items: pd.DataFrame) -> tuple[LoadedModel, NewItems]:
    """``loaded`` plus those canonical ``items`` rows it does not know and can score."""
    known = np.array([loaded.item_index.find(i) >= 0 for i in items["item_id"]], dtype=bool)
    new = items[~known].drop_duplicates("item_id").reset_index(drop=True)
    if new.empty:
        return loaded, NewItems()
    skipped: dict[str, str] = {}
    if not reads_content(loaded.model):
        why = (
            f"it arrived after training and {loaded.model_type} scores items by their "
            "interactions only; a retrained model will have it"
        )
        return loaded, NewItems(skipped={str(i): why for i in new["item_id"]})
    embeddable = has_content(new)
    for item_id in new.loc[~embeddable, "item_id"]:
        skipped[str(item_id)] = (
            "it arrived after training with no title, text or category "
            "to embed; give it one in the item source"
        )
    new = new[embeddable].reset_index(drop=True)
    if new.empty:
        return loaded, NewItems(skipped=skipped)
    from kuberec.components.features.embeddings import embed_items

    content = encode_content(new, loaded.encodings, embed_items(new))
    grown = _grown(loaded, content)
    log.info("%d new item(s) from their text (%d skipped)", len(content), len(skipped))
    titles = tuple(str(t) or f"item {i}" for t, i in zip(new["title"], new["item_id"], strict=True))
    return grown, NewItems(tuple(content.ids.tolist()), titles, skipped)


def _grown(loaded: LoadedModel, content: ItemContent) -> LoadedModel:
    m = len(content)
    model = with_new_items(loaded.model, loaded.model_type, loaded.hparams, content)
    first_seen = loaded.item_first_seen
    return replace(
        loaded,
        model=model,
        schema=model.schema,
        item_index=grown_index(loaded.item_index, content),
        history=grown_history(loaded.history, m),
        item_genres=np.concatenate([loaded.item_genres, content.genres.astype(np.float32)]),
        item_year=np.concatenate([loaded.item_year, content.year]),
        item_first_seen=None
        if first_seen is None
        else np.concatenate([first_seen, np.full(m, -1, dtype=first_seen.dtype)]),
    )


def similar_refusal(engine: Engine, item_id: object) -> str | None:
    """Why ``/similar`` cannot answer for ``item_id`` (None: it can)."""
    index = engine.loaded.item_index.find(item_id)
    if index < 0:
        return f"unknown item {item_id!r}: {engine.new_items.reason(item_id)}"
    new = index >= engine.n_items - len(engine.new_items.added)
    if new and engine.similarity.kind != "embedding":
        return (
            f"item {item_id!r} arrived after training and {engine.loaded.model_type} has "
            "no item embeddings to compare it by; two_tower answers /similar for new items"
        )
    return None
