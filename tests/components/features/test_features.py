"""The Feast feature repo on ml-100k: point-in-time correctness, skew, stores, idempotency."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.features import operations
from kuberec.components.features.ingest import ingest
from kuberec.components.features.store import StoreSettings, open_store
from kuberec.errors import FeatureStoreError
from kuberec.feature_repo.definitions import EMBEDDING_DIM


@pytest.fixture(scope="module")
def store(ml100k: Dataset, tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    settings = StoreSettings(tmp_path_factory.mktemp("features") / "data")
    ingest(ml100k, settings.sources_dir)
    feature_store = open_store(settings)
    operations.apply(feature_store)
    operations.materialize(feature_store)
    return feature_store


@pytest.fixture(scope="module")
def labels(ml100k: Dataset) -> pd.DataFrame:
    return ml100k.interactions.sample(3000, random_state=7).reset_index(drop=True)


@pytest.fixture(scope="module")
def frame(store: FeatureStore, labels: pd.DataFrame) -> pd.DataFrame:
    return operations.training_frame(store, labels)


def _strictly_before(history: pd.DataFrame, key: str, labels: pd.DataFrame) -> pd.DataFrame:
    """For each label, count and mean rating of ``key``'s interactions strictly earlier."""
    joined = labels[["user_id", "item_id", "timestamp"]].merge(
        history[[key, "timestamp", "rating"]], on=key, suffixes=("", "_h")
    )
    earlier = joined[joined["timestamp_h"] < joined["timestamp"]]
    stats = earlier.groupby(["user_id", "item_id"])["rating"].agg(["count", "mean"])
    out = labels[["user_id", "item_id"]].merge(
        stats.reset_index(), on=["user_id", "item_id"], how="left"
    )
    return out.fillna({"count": 0}).astype({"user_id": str, "item_id": str})


def test_training_frame_has_one_row_per_label(frame: pd.DataFrame, labels: pd.DataFrame) -> None:
    assert len(frame) == len(labels)


def test_user_features_count_only_interactions_before_the_label(
    frame: pd.DataFrame, labels: pd.DataFrame, ml100k: Dataset
) -> None:
    expected = _strictly_before(ml100k.interactions, "user_id", labels)
    merged = frame.merge(expected, on=["user_id", "item_id"])
    # A single value from the label's own time or later would raise a count.
    np.testing.assert_array_equal(merged["user_profile__interaction_count"], merged["count"])
    np.testing.assert_allclose(
        merged["user_profile__mean_rating"], merged["mean"], rtol=1e-5, equal_nan=True
    )


def test_item_features_count_only_interactions_before_the_label(
    frame: pd.DataFrame, labels: pd.DataFrame, ml100k: Dataset
) -> None:
    expected = _strictly_before(ml100k.interactions, "item_id", labels)
    merged = frame.merge(expected, on=["user_id", "item_id"])
    np.testing.assert_array_equal(merged["item_profile__popularity"], merged["count"])


def test_the_label_item_never_appears_in_its_own_recent_items(frame: pd.DataFrame) -> None:
    # Every (user, item) pair occurs once in ml-100k, so only a leak could put it there.
    recent = frame["user_profile__recent_items"]
    leaked = [i in set(r) for i, r in zip(frame["item_id"], recent, strict=True)]
    assert not any(leaked)


def test_recent_items_are_the_latest_ten_before_the_label(
    frame: pd.DataFrame, ml100k: Dataset
) -> None:
    history = ml100k.interactions.sort_values(["user_id", "timestamp"], kind="stable")
    row = frame[frame["user_profile__interaction_count"] >= 12].iloc[0]
    user = history[history["user_id"].astype(str) == row["user_id"]]
    before = user[user["timestamp"] < row["timestamp"]]
    distinct_times = before["timestamp"].iloc[-11:].is_unique
    expected = before["item_id"].astype(str).iloc[-10:][::-1].tolist()
    got = list(row["user_profile__recent_items"])
    assert got == expected if distinct_times else set(got) == set(expected)


def test_online_user_features_equal_the_latest_offline_values(
    store: FeatureStore, ml100k: Dataset
) -> None:
    offline = pd.read_parquet(Path(store.repo_path).parent / "sources" / "user_profile.parquet")
    latest = offline.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    users = [str(u) for u in ml100k.users["user_id"]]
    online = operations.online_features(store, "user", users).set_index("user_id")
    np.testing.assert_array_equal(
        online.loc[users, "interaction_count"], latest.loc[users, "interaction_count"]
    )
    np.testing.assert_allclose(
        online.loc[users, "mean_rating"], latest.loc[users, "mean_rating"], rtol=1e-6
    )
    assert [list(v) for v in online.loc[users, "recent_items"]] == [
        list(v) for v in latest.loc[users, "recent_items"]
    ]
    assert (online.loc[users, "occupation"] == latest.loc[users, "occupation"]).all()


def test_online_item_features_equal_the_latest_offline_values(
    store: FeatureStore, ml100k: Dataset
) -> None:
    offline = pd.read_parquet(Path(store.repo_path).parent / "sources" / "item_profile.parquet")
    latest = offline.sort_values("event_timestamp").groupby("item_id").tail(1).set_index("item_id")
    items = [str(i) for i in ml100k.items["item_id"]]
    online = operations.online_features(store, "item", items).set_index("item_id")
    np.testing.assert_array_equal(online.loc[items, "popularity"], latest.loc[items, "popularity"])
    np.testing.assert_array_equal(
        online.loc[items, "popularity_recent"], latest.loc[items, "popularity_recent"]
    )
    counts = ml100k.interactions["item_id"].astype(str).value_counts()
    assert online.loc["50", "popularity"] == counts["50"], "Star Wars: every rating counted"


def test_item_text_embeddings_are_384_d_unit_vectors_that_carry_meaning(
    store: FeatureStore,
) -> None:
    online = operations.online_features(store, "item", ["172", "181", "1"]).set_index("item_id")
    vectors = {k: np.asarray(v, dtype=np.float32) for k, v in online["embedding"].items()}
    assert all(v.shape == (EMBEDDING_DIM,) for v in vectors.values())
    np.testing.assert_allclose([np.linalg.norm(v) for v in vectors.values()], 1.0, rtol=1e-4)
    # The Empire Strikes Back is closer to Return of the Jedi than to Toy Story.
    assert vectors["172"] @ vectors["181"] > vectors["172"] @ vectors["1"]


def test_rematerializing_unchanged_data_writes_nothing_and_changes_nothing(
    store: FeatureStore, ml100k: Dataset
) -> None:
    users = [str(u) for u in ml100k.users["user_id"][:100]]
    before = operations.online_features(store, "user", users)
    assert operations.materialize(store).skipped
    operations.materialize(store, full=True)
    after = operations.online_features(store, "user", users)
    pd.testing.assert_frame_equal(before, after)


def test_incremental_materialization_picks_up_only_newer_data(
    ml100k: Dataset, tmp_path: Path
) -> None:
    settings = StoreSettings(tmp_path / "data")
    inter = ml100k.interactions
    cut = inter["timestamp"].quantile(0.8)
    early = Dataset("early", inter[inter["timestamp"] <= cut], ml100k.items, ml100k.users)
    ingest(early, settings.sources_dir, text_embeddings=False)
    feature_store = open_store(settings)
    operations.apply(feature_store)
    first = operations.materialize(feature_store)
    ingest(ml100k, settings.sources_dir, text_embeddings=False)
    second = operations.materialize(feature_store)
    assert second.start is None and second.views, "the second run is incremental"
    assert second.end > first.end
    online = operations.online_features(feature_store, "user", ["1", "405"]).set_index("user_id")
    counts = inter["user_id"].astype(str).value_counts()
    assert online.loc["405", "interaction_count"] == counts["405"]
    assert online.loc["1", "interaction_count"] == counts["1"]


def test_materialize_before_apply_says_what_to_run(tmp_path: Path, ml100k: Dataset) -> None:
    settings = StoreSettings(tmp_path / "data")
    ingest(ml100k, settings.sources_dir, text_embeddings=False)
    with pytest.raises(FeatureStoreError, match="kuberec features apply"):
        operations.materialize(open_store(settings))


def test_an_unknown_profile_lists_the_profiles(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match=r"'default', 'production'"):
        open_store(StoreSettings(tmp_path, profile="staging"))


# --- production profile: the machine's Redis and PostgreSQL --------------------------------------


@pytest.fixture
def production_store(ml100k: Dataset, tmp_path: Path) -> Iterator[FeatureStore]:
    settings = StoreSettings(
        tmp_path / "data", profile="production", project=f"kuberec_test_{uuid.uuid4().hex[:8]}"
    )
    ingest(ml100k, settings.sources_dir)
    feature_store = open_store(settings)
    yield feature_store
    feature_store.teardown()


def test_redis_online_store_round_trips_the_same_values_as_sqlite(
    production_store: FeatureStore, store: FeatureStore, ml100k: Dataset
) -> None:
    operations.apply(production_store)
    operations.materialize(production_store)
    assert production_store.config.online_store.type == "redis"
    assert production_store.config.registry.registry_type == "sql"
    users = [str(u) for u in ml100k.users["user_id"][:200]]
    redis = operations.online_features(production_store, "user", users)
    sqlite = operations.online_features(store, "user", users)
    pd.testing.assert_frame_equal(redis[sorted(redis.columns)], sqlite[sorted(sqlite.columns)])


def test_materializing_in_small_batches_writes_the_same_online_values(
    store: FeatureStore, ml100k: Dataset, tmp_path: Path
) -> None:
    settings = StoreSettings(tmp_path / "data")
    ingest(ml100k, settings.sources_dir, text_embeddings=False)
    batched = open_store(settings)
    operations.apply(batched)
    operations.materialize(batched, batch_rows=97)
    users = [str(u) for u in ml100k.users["user_id"]]
    items = [str(i) for i in ml100k.items["item_id"]]
    for entity, ids in (("user", users), ("item", items)):
        got = operations.online_features(batched, entity, ids)
        want = operations.online_features(store, entity, ids)[got.columns]
        pd.testing.assert_frame_equal(got, want)


def test_a_batch_size_below_one_is_refused(store: FeatureStore) -> None:
    with pytest.raises(FeatureStoreError, match="batch_rows must be at least 1"):
        operations.materialize(store, full=True, batch_rows=0)
