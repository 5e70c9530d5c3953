"""The feature operations the pipeline and the CLI call: apply, materialize, look up.

Materialization follows the data's own clock: its end is the newest source
timestamp (the watermark), not the wall clock, so replayed or historical data
(MovieLens is from 1998) is materialized in full, and re-running with no newer
data writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import FeatureService, FeatureStore
from feast.errors import FeastObjectNotFoundException

from kuberec.components.features import online_load, point_in_time
from kuberec.errors import FeatureStoreError
from kuberec.feature_repo.definitions import SCHEMA_FILE, load

LABEL_OFFSET = pd.Timedelta(seconds=1)


@dataclass(frozen=True)
class MaterializeResult:
    start: pd.Timestamp | None
    end: pd.Timestamp
    views: list[str]

    @property
    def skipped(self) -> bool:
        return not self.views


def apply(store: FeatureStore, sources_dir_name: str = "sources") -> list[str]:
    """Register entities, views and services for the ingested sources; returns view names."""
    sources = _sources_dir(store, sources_dir_name)
    if not (sources / SCHEMA_FILE).exists():
        raise FeatureStoreError(
            f"{sources} holds no ingested sources: run `kuberec features ingest` first"
        )
    definitions = load(sources)
    wanted = {view.name for view in definitions.views}
    # Views the sources no longer have (e.g. text embeddings switched off) are removed,
    # so nothing reads a file that is gone.
    stale = [view for view in store.list_feature_views() if view.name not in wanted]
    store.apply(definitions.objects(), objects_to_delete=stale, partial=not stale)
    return sorted(wanted)


def materialize(
    store: FeatureStore, *, full: bool = False, batch_rows: int = online_load.BATCH_ROWS
) -> MaterializeResult:
    """Load the newest values into the online store, incrementally from the last watermark."""
    watermark = _watermark(store)
    end = watermark + timedelta(seconds=1)
    views = store.list_feature_views()
    if not views:
        raise FeatureStoreError("no feature views registered: run `kuberec features apply` first")
    origin = _origin(store) - timedelta(days=1)
    loaded: list[str] = []
    fresh = False
    for view in views:
        last = view.most_recent_end_time
        if full or last is None:
            start, fresh = origin, True
        elif pd.Timestamp(last) < end:
            start = pd.Timestamp(last)
        else:
            continue
        online_load.load_view(store, view, start, end, batch_rows=batch_rows)
        loaded.append(view.name)
    return MaterializeResult(_origin(store) if fresh else None, end, loaded)


def training_frame(
    store: FeatureStore, labels: pd.DataFrame, service: str = "training"
) -> pd.DataFrame:
    """Point-in-time features for each labelled interaction (``user_id, item_id, timestamp``).

    Features are taken as of one second before the label, so the interaction
    being predicted (and anything after it) never leaks into its own features.
    The join is Feast's rule, run by ``point_in_time`` in linear memory.
    """
    missing = {"user_id", "item_id", "timestamp"} - set(labels.columns)
    if missing:
        raise FeatureStoreError(
            f"labels need columns user_id, item_id, timestamp; missing {sorted(missing)}"
        )
    entity_df = labels.copy()
    entity_df["user_id"] = entity_df["user_id"].astype(str)
    entity_df["item_id"] = entity_df["item_id"].astype(str)
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["timestamp"], utc=True) - LABEL_OFFSET
    frame = point_in_time.join(entity_df, point_in_time.reads(store, _service(store, service)))
    return frame.sort_values(["event_timestamp", "user_id", "item_id"]).reset_index(drop=True)


def online_features(
    store: FeatureStore, entity: str, ids: Iterable[object], service: str = "serving"
) -> pd.DataFrame:
    """The serving service's features of one entity kind (``user`` or ``item``) for ``ids``."""
    join_key = {"user": "user_id", "item": "item_id"}.get(entity)
    if join_key is None:
        raise FeatureStoreError(f"unknown entity {entity!r}; choose 'user' or 'item'")
    refs = feature_refs(store, service, entity)
    rows = [{join_key: str(i)} for i in ids]
    # to_dict keeps list features as Python lists; to_df turns some into arrays of objects.
    return pd.DataFrame(store.get_online_features(features=refs, entity_rows=rows).to_dict())


def feature_refs(store: FeatureStore, service: str, entity: str) -> list[str]:
    """``view:feature`` references of a service's views keyed by ``entity``."""
    views = {v.name: v for v in store.list_feature_views()}
    refs: list[str] = []
    for projection in _service(store, service).feature_view_projections:
        if entity in views[projection.name].entities:
            refs.extend(f"{projection.name_to_use()}:{f.name}" for f in projection.features)
    return refs


def _service(store: FeatureStore, name: str) -> FeatureService:
    try:
        return store.get_feature_service(name)
    except FeastObjectNotFoundException as exc:
        raise FeatureStoreError(
            f"no feature service {name!r} in Feast project {store.project!r}: run "
            "`kuberec features apply` for this store first"
        ) from exc


def _sources_dir(store: FeatureStore, name: str) -> Path:
    return Path(store.repo_path).parent / name


def _schema(store: FeatureStore) -> dict[str, object]:
    return json.loads((_sources_dir(store, "sources") / SCHEMA_FILE).read_text())


def _watermark(store: FeatureStore) -> pd.Timestamp:
    return pd.Timestamp(str(_schema(store)["watermark"]))


def _origin(store: FeatureStore) -> pd.Timestamp:
    return pd.Timestamp(str(_schema(store)["origin"]))
