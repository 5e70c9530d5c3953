"""Batch inference from a run directory: top-K per user, excluding what each user has seen.

The lists go through the same re-ranking stage as ``/recommend``
(:mod:`kuberec.components.models.ranking`), with the served default unless a
strategy is given, so a batch export matches what the service would answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.api.spec import RankingSpec
from kuberec.components.models import load_model, recommend
from kuberec.components.models.ranking import Ranker, model_signals, resolve
from kuberec.components.train.run_dir import MODEL
from kuberec.errors import ConfigError


def recommend_users(
    run_dir: Path, user_ids: list[object] | None, k: int, ranking: RankingSpec | None = None,
    *, what: str = "--ranking",
) -> tuple[pd.DataFrame, list[object]]:  # fmt: skip
    """(``user_id, item_id, rank, score`` rows, ids the model has never seen)."""
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    model_dir = Path(run_dir) / MODEL
    if not (model_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} holds no trained model ({model_dir} is missing)")
    loaded = load_model(model_dir)
    signals = model_signals(
        loaded.model, loaded.history, loaded.item_genres, loaded.item_first_seen
    )
    select = Ranker(
        resolve(ranking or RankingSpec(), loaded.item_index, signals, what=what), signals
    )
    ids = list(loaded.user_index.ids) if user_ids is None else list(user_ids)
    users = loaded.user_index.encode(ids, unknown=-1)
    unknown = [i for i, u in zip(ids, users, strict=True) if u < 0]
    known_ids = np.asarray(ids, dtype=object)[users >= 0]
    top = recommend(loaded.model, loaded.history, users[users >= 0], k, select=select)
    frame = top.to_frame(known_ids.tolist(), loaded.item_index)
    return frame[["user_id", "item_id", "rank", "score"]], unknown
