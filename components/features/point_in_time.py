"""The point-in-time join of a feature service's views onto labelled rows.

Same rule as Feast's ``get_historical_features``: each label gets, per view, the
entity's newest snapshot at or before its ``event_timestamp`` (within the view's
TTL when it has one), and nulls when there is none. Feast's DuckDB store joins
every label to every earlier snapshot of its entity and then keeps the newest,
which is quadratic in an entity's history: a popular item of the million-item
catalogue has tens of thousands of snapshots, and the step held 21.5 GB within
minutes (benchmarks/RESULTS.md, session 9). ``pandas.merge_asof`` finds the same
row per label from the key and timestamp columns after one sort, and the feature
columns are then taken from the Parquet source by row number, in Arrow.
The tests check the result equals Feast's own join on ml-100k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureService, FeatureStore, FeatureView

from kuberec.components.features.online_load import file_source, join_key

EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class ViewRead:
    """One projection of the service: which file, key, features, and their output names."""

    path: str
    key: str
    timestamp_field: str
    features: list[str]
    prefix: str
    ttl: pd.Timedelta | None


def reads(store: FeatureStore, service: FeatureService) -> list[ViewRead]:
    views: dict[str, FeatureView] = {v.name: v for v in store.list_feature_views()}
    out: list[ViewRead] = []
    for projection in service.feature_view_projections:
        view = views[projection.name]
        source = file_source(view)
        ttl = pd.Timedelta(view.ttl) if view.ttl else None
        out.append(
            ViewRead(
                path=source.path,
                key=join_key(view),
                timestamp_field=source.timestamp_field,
                features=[f.name for f in projection.features],
                prefix=projection.name_to_use(),
                ttl=ttl,
            )
        )
    return out


def join(entity_df: pd.DataFrame, views: list[ViewRead]) -> pd.DataFrame:
    """``entity_df`` (join keys as strings, ``event_timestamp``) with ``view__feature`` columns."""
    frame = pa.Table.from_pandas(entity_df.reset_index(drop=True), preserve_index=False)
    for view in views:
        rows = _matching_rows(entity_df, view)
        taken = pq.read_table(view.path, columns=view.features).take(rows)
        for name in view.features:
            frame = frame.append_column(f"{view.prefix}__{name}", taken.column(name))
    return frame.to_pandas()


def _matching_rows(entity_df: pd.DataFrame, view: ViewRead) -> pa.Array:
    """Per label (in order), the source row of its newest snapshot, or null."""
    index = pq.read_table(view.path, columns=[view.key, view.timestamp_field]).to_pandas()
    right = pd.DataFrame(
        {
            view.key: index[view.key].astype(str),
            "_at": pd.to_datetime(index[view.timestamp_field], utc=True),
            "_row": np.arange(len(index), dtype=np.int64),
        }
    ).sort_values("_at", kind="stable")
    left = pd.DataFrame(
        {
            view.key: entity_df[view.key].astype(str).to_numpy(),
            "_at": pd.to_datetime(entity_df[EVENT_TIMESTAMP], utc=True).to_numpy(),
            "_label": np.arange(len(entity_df), dtype=np.int64),
        }
    ).sort_values("_at", kind="stable")
    left["_at"] = pd.to_datetime(left["_at"], utc=True)
    matched = pd.merge_asof(
        left, right, on="_at", by=view.key, direction="backward", tolerance=view.ttl
    ).sort_values("_label")
    found = matched["_row"].to_numpy(dtype=np.float64)
    missing = np.isnan(found)
    return pa.array(np.where(missing, 0, found).astype(np.int64), mask=missing)
