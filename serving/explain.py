"""Why an item was recommended: the most similar item in the user's history, by title.

Similarity is the cosine of item embeddings where the model has meaningful ones
(``mf``, ``two_tower``, ``sasrec``, ``gru4rec``) and otherwise the cosine of
item columns of the user-item matrix (co-occurrence), which every saved model
carries in its histories. The same measure answers ``/similar``.

Titles are not part of a saved model; they are read once at start-up from the
data the run names in its ``config.json`` (a MovieLens release or an items
file). Where none can be read the item id stands in, so serving never depends
on the training data being present.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.models.similarity import Similarity

log = logging.getLogger(__name__)

#: History items compared per explanation (the most recent ones): bounds the cost.
MAX_HISTORY = 200
#: The explanation of a popularity fallback.
POPULAR = "popular with other users"


class Explainer:
    """One short sentence per recommended item."""

    def __init__(self, similarity: Similarity, titles: Sequence[str]) -> None:
        self.similarity = similarity
        self.titles = titles
        #: Every sentence there can be, made once at load, not per request and item.
        self.because = [f"because you liked {title}" for title in titles]

    def explain(self, history: np.ndarray, items: np.ndarray, *, fallback: bool) -> list[str]:
        if fallback or len(history) == 0:
            return [POPULAR] * len(items)
        recent = np.asarray(history, dtype=np.int64)[-MAX_HISTORY:]
        best = self.similarity.best_match(recent, np.asarray(items, dtype=np.int64))
        because = self.because
        return [because[i] for i in best.tolist()]


def load_titles(model_root: Path, item_index: IdIndex) -> list[str]:
    """Item titles in index order, from the run's data; ``item <id>`` where unknown."""
    titles = [f"item {item_id}" for item_id in item_index.ids.tolist()]
    try:
        found = _titles_from_config(model_root)
    except Exception as exc:  # titles are cosmetic: never fail serving over them
        log.warning("item titles unavailable (%s); explanations use item ids", exc)
        return titles
    if not found:
        return titles
    for position, item_id in enumerate(item_index.ids.tolist()):
        title = found.get(item_id) or found.get(str(item_id))
        if title:
            titles[position] = title
    return titles


def _titles_from_config(model_root: Path) -> dict[object, str]:
    saved = model_root / "items.parquet"  # written with the run since titles matter here
    if saved.is_file():
        import pandas as pd

        items = pd.read_parquet(saved)
        return {k: str(v) for k, v in zip(items["item_id"], items["title"], strict=True) if v}
    config_path = model_root / "config.json"
    if not config_path.is_file():
        return {}
    data = json.loads(config_path.read_text()).get("data", {})
    spec = data.get("spec", data)
    name = spec.get("movielens") or spec.get("dataset")
    if isinstance(name, str) and name.startswith("ml-"):
        from kuberec.components.datasets.movielens import load_movielens

        items = load_movielens(name).items
    elif isinstance(spec.get("items"), dict) and spec["items"].get("uri"):
        from kuberec.components.datasets.generic import keep_ids
        from kuberec.components.datasets.parsing import read_table

        items = read_table(Path(str(spec["items"]["uri"]).removeprefix("file://")))
        if "item_id" not in items or "title" not in items:
            return {}
        items = items.assign(item_id=keep_ids(items["item_id"]))
    else:
        return {}
    return {k: str(v) for k, v in zip(items["item_id"], items["title"], strict=True) if v}
