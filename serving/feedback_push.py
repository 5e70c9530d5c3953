"""Feedback becomes online features: clicks and purchases pushed to Feast (``FeatureStore.push``).

``user_profile`` and ``item_profile`` read from push sources
(:data:`~kuberec.feature_repo.definitions.PUSH_SOURCES`) whose batch sources
are the ingested files, so materialization fills them and the serving path
updates them. A push writes whole rows, so each batch reads the current rows
of its users and items, applies the events in order and pushes the result:
the user's ``recent_items`` gets the item in front (newest first, at most
:data:`~kuberec.components.features.ingest.RECENT_ITEMS`), ``interaction_count``
and the item's ``popularity`` / ``popularity_recent`` grow by one. Impressions
move no feature. One pusher per server process writes (read-modify-write is
not atomic across replicas: two replicas pushing the same user at once can
lose one update until the next materialization).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kuberec.components.datasets.feedback import INTERACTIONS
from kuberec.components.features.ingest import RECENT_ITEMS
from kuberec.feature_repo.definitions import PUSH_SOURCES
from kuberec.serving.feedback_sink import Event

_KEYS = {"user_profile": "user_id", "item_profile": "item_id"}


class OnlinePusher:
    """Owns its FeatureStore (and online-store connection): it runs on the pusher thread."""

    def __init__(self, repo_dir: Path) -> None:
        from feast import FeatureStore

        self.store = FeatureStore(repo_path=str(repo_dir))
        self._features = {
            view: [f.name for f in self.store.get_feature_view(view).features]
            for view in PUSH_SOURCES
        }

    def push(self, events: Sequence[Event]) -> int:
        """Write the interactions among ``events``; returns how many moved features."""
        from feast.data_source import PushMode

        taken = [e for e in events if e.event in INTERACTIONS]
        if not taken:
            return 0
        now = max(e.timestamp for e in taken)
        users = self._rows("user_profile", [e.user_id for e in taken])
        items = self._rows("item_profile", [e.item_id for e in taken])
        for event in taken:
            user = users[event.user_id]
            user["recent_items"] = [event.item_id, *(user["recent_items"] or [])][:RECENT_ITEMS]
            user["interaction_count"] = (user["interaction_count"] or 0) + 1
            item = items[event.item_id]
            item["popularity"] = (item["popularity"] or 0) + 1
            item["popularity_recent"] = (item["popularity_recent"] or 0) + 1
        for view, rows in (("user_profile", users), ("item_profile", items)):
            frame = pd.DataFrame([{_KEYS[view]: key, **values} for key, values in rows.items()])
            frame["event_timestamp"] = pd.Timestamp(now)  # events carry UTC times
            self.store.push(PUSH_SOURCES[view], frame, to=PushMode.ONLINE)
        return len(taken)

    def _rows(self, view: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The current online row of each key (all features; None where the store has none)."""
        unique = list(dict.fromkeys(keys))
        refs = [f"{view}:{name}" for name in self._features[view]]
        found = self.store.get_online_features(
            features=refs, entity_rows=[{_KEYS[view]: k} for k in unique]
        ).to_dict()
        return {
            key: {name: found[name][i] for name in self._features[view]}
            for i, key in enumerate(unique)
        }
