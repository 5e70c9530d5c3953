"""The point-in-time join gives exactly what Feast's own historical retrieval gives."""

from __future__ import annotations

import pandas as pd
import pytest
from feast import FeatureStore

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.features import operations
from kuberec.components.features.ingest import ingest
from kuberec.components.features.store import StoreSettings, open_store


@pytest.fixture(scope="module")
def store(ml100k: Dataset, tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    settings = StoreSettings(tmp_path_factory.mktemp("pit") / "data")
    ingest(ml100k, settings.sources_dir, text_embeddings=False)
    feature_store = open_store(settings)
    operations.apply(feature_store)
    return feature_store


def _feast_frame(store: FeatureStore, labels: pd.DataFrame) -> pd.DataFrame:
    entity_df = labels.astype({"user_id": str, "item_id": str})
    entity_df["event_timestamp"] = (
        pd.to_datetime(entity_df["timestamp"], utc=True) - operations.LABEL_OFFSET
    )
    job = store.get_historical_features(
        entity_df=entity_df,
        features=store.get_feature_service("training"),
        full_feature_names=True,
    )
    frame = job.to_df().sort_values(["event_timestamp", "user_id", "item_id"])
    return frame.reset_index(drop=True)


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    lists = [c for c in frame.columns if c.endswith(("recent_items", "genres"))]
    out = frame.astype({c: "datetime64[ns, UTC]" for c in ("timestamp", "event_timestamp")})
    return out.assign(**{c: out[c].map(list) for c in lists})


def test_the_training_frame_equals_feasts_historical_features(
    store: FeatureStore, ml100k: Dataset
) -> None:
    labels = ml100k.interactions.sample(5000, random_state=3).reset_index(drop=True)
    ours = operations.training_frame(store, labels)
    feast = _feast_frame(store, labels)
    pd.testing.assert_frame_equal(_comparable(ours), _comparable(feast[ours.columns]))


def test_a_label_before_an_entitys_first_snapshot_gets_nulls(
    store: FeatureStore, ml100k: Dataset
) -> None:
    first = ml100k.interactions.sort_values("timestamp").iloc[[0]]
    early = first.assign(timestamp=first["timestamp"] - pd.Timedelta(days=3650))
    frame = operations.training_frame(store, early)
    assert frame["user_profile__interaction_count"].isna().all()
    assert frame["item_profile__popularity"].isna().all()
