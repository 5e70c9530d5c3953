"""Fresh user history from the Feast online store (SQLite locally, Redis in production).

A model knows each user's history as of its training data; the online store
knows it as of the last materialization. The service uses the fresher one for
two things: users the model never saw get personal recommendations from their
recent items instead of the popularity fallback, and items consumed after
training are excluded like the ones before. ``KUBEREC_FEAST_REPO`` names the
rendered Feast repo (``<job dir>/data/feature_repo``, or one a cluster pod renders:
:mod:`.feast_repo`); unset, nothing is read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from kuberec.serving.feast_repo import FEAST_REPO_ENV, feast_repo

RECENT_ITEMS = "user_profile:recent_items"

log = logging.getLogger(__name__)


class OnlineHistory:
    """Holds one FeatureStore (its registry cache and online-store connection)."""

    def __init__(self, repo_dir: Path) -> None:
        from feast import FeatureStore

        self.repo_dir = Path(repo_dir)
        self.store = FeatureStore(repo_path=str(self.repo_dir))

    @classmethod
    def from_env(cls) -> OnlineHistory | None:
        repo = os.environ.get(FEAST_REPO_ENV)
        if not repo:
            return None
        try:
            return cls(feast_repo() or Path(repo))
        except Exception as exc:  # a broken store must not stop serving; the model still answers
            log.warning("online features off: cannot open the Feast repo at %s: %s", repo, exc)
            return None

    def recent_items(self, user_ids: Sequence[object]) -> dict[str, list[str]]:
        """Each user's most recent items, oldest first (the order sequence models read).

        Users the store does not know are omitted.
        """
        if not user_ids:
            return {}
        rows = [{"user_id": str(u)} for u in user_ids]
        try:
            found = self.store.get_online_features(features=[RECENT_ITEMS], entity_rows=rows)
            values = found.to_dict()
        except Exception as exc:  # unreachable Redis, missing view: degrade, never fail a request
            log.warning("online feature lookup failed: %s", exc)
            return {}
        users = values.get("user_id", [])
        items = values.get("recent_items", [])
        # the store keeps them newest first
        pairs = zip(users, items, strict=True)
        return {str(u): [str(i) for i in reversed(v)] for u, v in pairs if v}
