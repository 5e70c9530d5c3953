"""The seeded synthetic generator: reproducible, canonical, learnable, written all or nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from kuberec.components.datasets import synthetic
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.synthetic import (
    START,
    SyntheticSpec,
    generate,
    read_parquet,
    write_parquet,
)
from kuberec.errors import ConfigError, DataError

SMALL = SyntheticSpec(n_users=500, n_items=300, n_interactions=20_000, seed=7)


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate(SMALL)


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)
    assert a.meta == b.meta


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_dataset(small: Dataset) -> None:
    assert_same_dataset(generate(SMALL), small)


def test_different_seed_gives_different_dataset(small: Dataset) -> None:
    other = generate(SyntheticSpec(n_users=500, n_items=300, n_interactions=20_000, seed=8))
    assert not other.interactions.equals(small.interactions)
    assert not other.items["text"].equals(small.items["text"])


@pytest.mark.parametrize("block_target", [250_000, 2_000], ids=["one-block", "many-blocks"])
@pytest.mark.parametrize("chunk", [3_000, 50_000])
def test_parquet_output_equals_generate_whatever_the_chunk_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, block_target: int
) -> None:
    monkeypatch.setattr(synthetic, "_BLOCK_TARGET", block_target)
    spec = SyntheticSpec(
        n_users=500, n_items=300, n_interactions=20_000, seed=7, chunk_interactions=chunk
    )
    out = write_parquet(spec, tmp_path / "ds")
    parts = sorted((out / "interactions").glob("part-*.parquet"))
    assert len(parts) == math.ceil(20_000 / chunk)
    assert_same_dataset(read_parquet(out), generate(SMALL))


def test_manifest_records_spec_and_row_counts(tmp_path: Path) -> None:
    out = write_parquet(SMALL, tmp_path / "ds")
    manifest = json.loads((out / "manifest.json").read_text())
    assert SyntheticSpec.from_dict(manifest["spec"]) == SMALL
    assert manifest["rows"] == {"interactions": 20_000, "items": 300, "users": 500}


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize(
    "spec",
    [
        SMALL,
        SyntheticSpec(n_users=100, n_items=50, n_interactions=30),  # fewer than users
        SyntheticSpec(n_users=40, n_items=30, n_interactions=1_200),  # every pair taken
        SyntheticSpec(n_users=30, n_items=20_000, n_interactions=3_000, n_categories=300),
    ],
    ids=["small", "sparse", "saturated", "wide-catalogue"],
)
def test_interaction_count_is_exact(spec: SyntheticSpec) -> None:
    assert len(generate(spec).interactions) == spec.n_interactions


def test_ids_are_one_based_and_in_range(small: Dataset) -> None:
    inter = small.interactions
    assert inter["user_id"].between(1, SMALL.n_users).all()
    assert inter["item_id"].between(1, SMALL.n_items).all()
    assert small.items["item_id"].tolist() == list(range(1, SMALL.n_items + 1))
    assert small.users["user_id"].tolist() == list(range(1, SMALL.n_users + 1))


def test_no_user_item_pair_repeats(small: Dataset) -> None:
    assert not small.interactions.duplicated(["user_id", "item_id"]).any()


def test_no_user_item_pair_repeats_across_many_user_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(synthetic, "_BLOCK_TARGET", 1_000)
    inter = generate(SMALL).interactions
    assert len(inter) == SMALL.n_interactions
    assert not inter.duplicated(["user_id", "item_id"]).any()


def test_timestamps_lie_within_the_time_range(small: Dataset) -> None:
    ts = small.interactions["timestamp"]
    assert ts.min() >= START
    assert ts.max() < START + pd.Timedelta(days=SMALL.n_days)


def test_ratings_are_whole_numbers_from_1_to_5(small: Dataset) -> None:
    ratings = small.interactions["rating"].to_numpy()
    assert set(np.unique(ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_tables_have_the_canonical_dtypes(small: Dataset) -> None:
    inter, items, users = small.interactions, small.items, small.users
    assert inter.dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "item_id": "int64",
        "rating": "float32",
        "timestamp": "datetime64[ns, UTC]",
    }
    assert str(items["year"].dtype) == "Int64"
    assert all(isinstance(g, list) and all(isinstance(x, str) for x in g) for g in items["genres"])
    assert users.dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "segment": "object",
        "age": "int64",
    }


def test_items_have_titles_one_to_three_categories_and_text(small: Dataset) -> None:
    items = small.items
    assert items["title"].iloc[122] == "Item 123"
    assert items["genres"].map(len).between(1, 3).all()
    assert items["genres"].map(lambda g: len(set(g)) == len(g)).all()
    assert items["genres"].explode().str.fullmatch(r"category-\d\d").all()
    assert items["text"].str.len().gt(10).all()


# --------------------------------------------------------------------------- signal


def test_popularity_is_heavy_tailed() -> None:
    spec = SyntheticSpec(n_users=2_000, n_items=1_000, n_interactions=20_000)
    counts = generate(spec).interactions["item_id"].value_counts()
    assert counts.iloc[: spec.n_items // 10].sum() > 0.4 * spec.n_interactions


def test_item_knn_beats_popularity(small: Dataset) -> None:
    users = small.interactions["user_id"].to_numpy() - 1
    items = small.interactions["item_id"].to_numpy() - 1
    held_out = np.random.default_rng(0).random(len(users)) < 0.2
    shape = (SMALL.n_users, SMALL.n_items)
    train = sp.csr_matrix(
        (np.ones((~held_out).sum()), (users[~held_out], items[~held_out])), shape=shape
    )
    test = sp.csr_matrix(
        (np.ones(held_out.sum()), (users[held_out], items[held_out])), shape=shape
    ).toarray()
    popularity = np.tile(np.asarray(train.sum(axis=0)).ravel(), (SMALL.n_users, 1))
    cooc = (train.T @ train).toarray()
    norm = np.sqrt(np.diag(cooc)) + 1e-9
    similarity = cooc / norm[:, None] / norm[None, :]
    np.fill_diagonal(similarity, 0.0)
    knn = np.asarray(train @ similarity)
    assert recall_at_10(knn, train, test) > 1.4 * recall_at_10(popularity, train, test)


def recall_at_10(scores: np.ndarray, train: sp.csr_matrix, test: np.ndarray) -> float:
    scores = scores.astype(np.float64)
    scores[train.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = np.take_along_axis(test, top, axis=1).sum(axis=1)
    n_test = test.sum(axis=1)
    has = n_test > 0
    return float((hits[has] / np.minimum(n_test[has], 10)).mean())


def test_sessions_keep_categories_together(small: Dataset) -> None:
    inter = small.interactions
    primary = small.items["genres"].str[0].to_numpy()[inter["item_id"].to_numpy() - 1]
    same_user = inter["user_id"].to_numpy()[1:] == inter["user_id"].to_numpy()[:-1]
    gap = np.diff(inter["timestamp"].to_numpy()).astype("timedelta64[s]").astype(np.int64)
    in_session = same_user & (gap < 30 * 60)
    same_category = primary[1:] == primary[:-1]
    shuffled = np.random.default_rng(0).permutation(primary)
    baseline = (shuffled[1:] == shuffled[:-1]).mean()
    assert in_session.mean() > 0.5
    assert same_category[in_session].mean() > 2 * baseline


def test_ratings_follow_affinity(small: Dataset) -> None:
    """Ratings come from user-item affinity, so they differ by user much more than noise."""
    by_user = small.interactions.groupby("user_id")["rating"].mean()
    assert by_user.std() > 0.2


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_users", 0),
        ("n_items", -3),
        ("n_interactions", 2.5),
        ("n_categories", 0),
        ("dim", True),
        ("n_days", 0),
        ("seed", -1),
        ("chunk_interactions", 0),
        ("popularity_exponent", -0.5),
        ("popularity_exponent", float("nan")),
    ],
)
def test_invalid_spec_raises_config_error_naming_the_field(field: str, value: object) -> None:
    values: dict[str, object] = {"n_users": 10, "n_items": 10, "n_interactions": 10}
    values[field] = value
    with pytest.raises(ConfigError, match=rf"SyntheticSpec\.{field} must"):
        SyntheticSpec(**values)  # type: ignore[arg-type]


def test_more_interactions_than_user_item_pairs_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"n_interactions must be <= n_users \* n_items"):
        SyntheticSpec(n_users=3, n_items=4, n_interactions=13)


# --------------------------------------------------------------------------- writing


def test_failure_while_writing_leaves_no_output_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = synthetic._write_part
    calls: list[Path] = []

    def fail_on_second(path: Path, columns: dict[str, np.ndarray]) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(path, columns)

    monkeypatch.setattr(synthetic, "_write_part", fail_on_second)
    spec = SyntheticSpec(n_users=500, n_items=300, n_interactions=20_000, chunk_interactions=3_000)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(spec, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_existing_non_empty_dir_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="overwrite=True"):
        write_parquet(SMALL, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_overwrite_replaces_existing_dir(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("old")
    write_parquet(SMALL, out, overwrite=True)
    assert not (out / "old.txt").exists()
    assert (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_reading_a_dir_without_manifest_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no manifest\.json"):
        read_parquet(tmp_path)


# --------------------------------------------------------------------------- memory bound


def test_sizes_beyond_the_available_memory_are_refused_before_allocating() -> None:
    huge = SyntheticSpec(n_users=10**12, n_items=1000, n_interactions=10**6)
    with pytest.raises(
        ConfigError,
        match=r"1,000,000,000,000 users.*needs about [\d,.]+ GiB "
        r"of memory.*GiB is available: lower users",
    ):
        generate(huge)


def test_writing_in_chunks_is_bounded_by_users_and_items_not_interactions(
    tmp_path: Path,
) -> None:
    many = SyntheticSpec(n_users=10**6, n_items=10**4, n_interactions=10**10)
    assert synthetic.memory_needed(many, streaming=True) < synthetic.memory_needed(many) / 100
    with pytest.raises(ConfigError, match="needs about"):
        write_parquet(SyntheticSpec(10**12, 10, 10), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_memory_error_names_what_is_needed_and_what_is_available() -> None:
    with pytest.raises(ConfigError, match=r"needs about 0\.5 GiB .*; 0\.2 GiB is available"):
        synthetic.check_memory(SyntheticSpec(10**6, 100, 1000), available=2**28)
