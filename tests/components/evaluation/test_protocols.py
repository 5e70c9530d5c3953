"""Specification of the split protocols: published definitions, leakage, determinism, ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuberec.components.evaluation import (
    PROTOCOLS,
    Split,
    kfold,
    leave_one_out,
    leave_one_out_sampled,
    protocol_options,
    random_811,
    split,
    stratified,
    temporal,
)
from kuberec.components.evaluation import negatives as negatives_module
from kuberec.errors import ConfigError, DataError

PAIR = ["user_id", "item_id"]


def interactions(
    n_users: int = 30, n_items: int = 60, seed: int = 0, ratings: bool = True
) -> pd.DataFrame:
    """Canonical interactions: 1..40 distinct items per user, distinct timestamps.

    Users 0 and 1 have 1 and 2 interactions: too short for leave-one-out's valid + test.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        size = user + 1 if user < 2 else int(rng.integers(1, 41))
        for item in rng.choice(n_items, size=size, replace=False):
            rows.append((user, int(item)))
    frame = pd.DataFrame(rows, columns=PAIR).astype("int64")
    n = len(frame)
    frame["rating"] = (
        rng.integers(1, 6, n).astype("float32") if ratings else np.full(n, np.nan, "float32")
    )
    seconds = 880_000_000 + rng.permutation(n) * 60
    frame["timestamp"] = pd.to_datetime(seconds, unit="s", utc=True)
    return frame


def rows_per_user(frame: pd.DataFrame | None) -> pd.Series:
    assert frame is not None
    return frame.groupby("user_id").size()


def pairs(frame: pd.DataFrame | None) -> set[tuple[int, int]]:
    if frame is None:
        return set()
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


def assert_no_pair_leaks(result: Split) -> None:
    train, valid, test = pairs(result.train), pairs(result.valid), pairs(result.test)
    assert not train & test
    assert not train & valid
    assert not valid & test


def assert_partition(result: Split, data: pd.DataFrame) -> None:
    parts = [p for p in (result.train, result.valid, result.test) if p is not None]
    combined = pd.concat(parts, ignore_index=True)
    assert len(combined) == len(data)
    assert pairs(combined) == pairs(data)


def assert_same_split(a: Split, b: Split) -> None:
    for name in ("train", "valid", "test", "negatives"):
        left, right = getattr(a, name), getattr(b, name)
        if left is None:
            assert right is None
        else:
            pd.testing.assert_frame_equal(left, right)


DATA = interactions()


# --- stratified (MS Recommenders python_stratified_split) --------------------------------


def ms_stratified_reference(data: pd.DataFrame, ratio: float, seed: int) -> set[tuple[int, int]]:
    """MS Recommenders' _do_stratification(is_random=True), restated in its own pandas idiom."""
    data = data.copy()
    np.random.seed(seed)
    data["random"] = np.random.rand(data.shape[0])
    data = data.sort_values(["user_id", "random"])
    groups = data.groupby("user_id")
    data["count"] = groups["user_id"].transform("count")
    data["rank"] = groups.cumcount() + 1
    return pairs(data[data["rank"] / data["count"] <= ratio])


def test_stratified_reproduces_ms_recommenders_draw_for_draw():
    result = stratified(DATA, seed=42)
    assert pairs(result.train) == ms_stratified_reference(DATA, 0.75, 42)


def test_stratified_sends_rank_over_count_up_to_the_ratio_of_each_user_to_train():
    # a user with n rows keeps the rows ranked r with r / n <= 0.75: 5 rows -> 3, 8 -> 6
    result = stratified(DATA, seed=1)
    total = rows_per_user(DATA)
    expected = total.map(lambda n: sum(r / n <= 0.75 for r in range(1, n + 1)))
    assert rows_per_user(result.train).reindex(total.index, fill_value=0).equals(expected)


def test_stratified_filter_by_item_stratifies_each_items_rows():
    result = stratified(DATA, seed=1, ratio=0.5, filter_by="item")
    total = DATA.groupby("item_id").size()
    expected = total.map(lambda n: sum(r / n <= 0.5 for r in range(1, n + 1)))
    got = result.train.groupby("item_id").size().reindex(total.index, fill_value=0)
    assert got.equals(expected)


def test_stratified_item_is_the_per_item_split_under_its_own_name():
    per_item = stratified(DATA, seed=1, filter_by="item")
    result = split("stratified-item", DATA, seed=1)
    assert result.protocol == "stratified-item"
    assert pairs(result.train) == pairs(per_item.train)
    assert pairs(result.test) == pairs(per_item.test)


def test_stratified_test_ratings_are_all_kept_as_relevant():
    result = stratified(DATA, seed=3)
    assert_partition(result, DATA)
    assert result.valid is None
    assert result.ranking == "full"


# --- random-811 (RecBole) ----------------------------------------------------------------


def test_random_811_drops_ratings_below_three():
    result = random_811(DATA, seed=0)
    kept = DATA[DATA["rating"] >= 3]
    assert_partition(result, kept)


def test_random_811_keeps_every_row_when_the_source_has_no_ratings():
    data = interactions(ratings=False)
    assert_partition(random_811(data, seed=0), data)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (20, (16, 2, 2)),  # int(0.1 * 20) = 2 each
        (10, (8, 1, 1)),
        (25, (21, 2, 2)),  # int(2.5) = 2: valid and test round down
        (5, (3, 1, 1)),  # 0.5 rounds to 0, then each tail part is topped up to 1
        (2, (1, 0, 1)),  # test topped up; train then has 1 row, so valid stays empty
        (1, (1, 0, 0)),
    ],
)
def test_random_811_cuts_each_user_with_recbole_rounding(n, expected):
    data = pd.DataFrame(
        {
            "user_id": np.zeros(n, dtype="int64"),
            "item_id": np.arange(n, dtype="int64"),
            "rating": np.full(n, 5.0, dtype="float32"),
            "timestamp": pd.to_datetime(np.arange(n), unit="s", utc=True),
        }
    )
    result = random_811(data, seed=0)
    assert (len(result.train), len(result.valid), len(result.test)) == expected


def test_random_811_test_candidates_exclude_train_and_valid():
    result = random_811(DATA, seed=0)
    assert pairs(result.seen("test")) == pairs(result.train) | pairs(result.valid)
    assert pairs(result.seen("valid")) == pairs(result.train)


# --- leave-one-out -----------------------------------------------------------------------


def test_leave_one_out_tests_each_users_last_interaction_and_validates_the_one_before():
    result = leave_one_out(DATA)
    ordered = DATA.sort_values("timestamp").groupby("user_id")
    eligible = rows_per_user(DATA)[lambda n: n >= 3].index
    last = ordered.tail(1).set_index("user_id").loc[eligible, "item_id"]
    second = ordered.nth(-2).set_index("user_id").loc[eligible, "item_id"]
    assert result.test.set_index("user_id")["item_id"].sort_index().equals(last.sort_index())
    assert result.valid.set_index("user_id")["item_id"].sort_index().equals(second.sort_index())


def test_leave_one_out_never_tests_on_an_interaction_older_than_that_users_train():
    result = leave_one_out(DATA)
    latest_train = result.train.groupby("user_id")["timestamp"].max()
    for part in (result.valid, result.test):
        assert (part.set_index("user_id")["timestamp"] >= latest_train.loc[part["user_id"]]).all()
    assert (
        result.test.set_index("user_id")["timestamp"]
        >= result.valid.set_index("user_id")["timestamp"].reindex(result.test["user_id"])
    ).all()
    assert_no_pair_leaks(result)


def test_leave_one_out_keeps_users_with_fewer_than_three_interactions_in_train_only():
    result = leave_one_out(DATA)
    short = rows_per_user(DATA)[lambda n: n < 3].index
    assert len(short) > 0
    assert not result.test["user_id"].isin(short).any()
    assert result.train["user_id"].isin(short).sum() == DATA["user_id"].isin(short).sum()


def test_leave_one_out_without_valid_tests_every_user_with_two_interactions():
    result = leave_one_out(DATA, valid=False)
    assert result.valid is None
    assert set(result.test["user_id"]) == set(rows_per_user(DATA)[lambda n: n >= 2].index)
    assert_partition(result, DATA)


def test_leave_one_out_breaks_timestamp_ties_by_input_order():
    same_time = pd.Timestamp("2020-01-01", tz="UTC")
    data = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "item_id": [10, 20, 30],
            "rating": np.float32(4),
            "timestamp": [same_time] * 3,
        }
    )
    result = leave_one_out(data)
    assert result.test["item_id"].tolist() == [30]
    assert result.valid["item_id"].tolist() == [20]


# --- leave-one-out, sampled (NCF, SASRec) ------------------------------------------------


def test_sampled_leave_one_out_draws_100_unseen_items_per_test_user():
    data = interactions(n_users=20, n_items=300)
    result = leave_one_out_sampled(data, seed=5)
    negatives = result.negatives
    assert negatives is not None and result.ranking == "sampled"
    assert (rows_per_user(negatives) == 100).all()
    assert set(negatives["user_id"]) == set(result.test["user_id"])
    assert not negatives.duplicated().any()
    assert not pairs(negatives) & pairs(data)  # never an item the user interacted with
    assert set(negatives["item_id"]) <= set(data["item_id"])


def test_sampled_leave_one_out_gives_all_remaining_items_when_fewer_than_asked_exist():
    # 10 items in the data; user 0 has seen 7 of them, so only 3 negatives exist
    data = pd.DataFrame(
        {
            "user_id": [0] * 7 + [1] * 3,
            "item_id": range(10),
            "rating": np.float32(5),
            "timestamp": pd.to_datetime(np.arange(10), unit="s", utc=True),
        }
    )
    result = leave_one_out_sampled(data, seed=0, n_negatives=5)
    user0 = result.negatives[result.negatives["user_id"] == 0]
    assert sorted(user0["item_id"]) == [7, 8, 9]


def test_the_exact_sampling_fallback_keeps_the_same_guarantees(monkeypatch):
    # with no rejection rounds every user's negatives come from the per-user fallback
    monkeypatch.setattr(negatives_module, "_MAX_ROUNDS", 0)
    data = interactions(n_users=10, n_items=80)
    result = leave_one_out_sampled(data, seed=1, n_negatives=30)
    assert (rows_per_user(result.negatives) == 30).all()
    assert not result.negatives.duplicated().any()
    assert not pairs(result.negatives) & pairs(data)


def test_sampled_candidates_are_the_target_then_its_negatives_with_labels():
    result = leave_one_out_sampled(DATA, seed=2, n_negatives=10)
    candidates = result.candidates("test")
    assert candidates["label"].sum() == len(result.test)
    assert (~candidates["label"]).sum() == 10 * len(result.test)


def test_sampled_negatives_depend_on_the_seed_only():
    a = leave_one_out_sampled(DATA, seed=9, n_negatives=20)
    b = leave_one_out_sampled(DATA.sample(frac=1.0, random_state=4), seed=9, n_negatives=20)
    c = leave_one_out_sampled(DATA, seed=10, n_negatives=20)
    pd.testing.assert_frame_equal(a.negatives, b.negatives)
    assert not a.negatives.equals(c.negatives)


def test_sampled_leave_one_out_evaluates_at_most_n_users_sampled_test_users():
    data = interactions(n_users=40, n_items=200)
    everyone = leave_one_out_sampled(data, seed=3, n_users=None)
    result = leave_one_out_sampled(data, seed=3, n_users=10)
    assert result.test["user_id"].nunique() == 10
    assert set(result.test["user_id"]) <= set(everyone.test["user_id"])
    assert set(result.valid["user_id"]) == set(result.test["user_id"])
    assert set(result.negatives["user_id"]) == set(result.test["user_id"])
    pd.testing.assert_frame_equal(result.train, everyone.train)  # training data is unchanged


def test_sampled_leave_one_out_keeps_every_user_below_the_paper_s_10000():
    data = interactions(n_users=40, n_items=200)
    result = leave_one_out_sampled(data, seed=3)
    assert result.options["n_users"] == 10_000
    assert set(result.test["user_id"]) == set(leave_one_out(data).test["user_id"])


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_sampled_leave_one_out_rejects_a_user_count_that_is_not_positive(bad):
    with pytest.raises(ConfigError, match="n_users must be a positive integer"):
        leave_one_out_sampled(DATA, seed=0, n_users=bad)


def test_full_ranking_protocols_have_no_sampled_candidates():
    with pytest.raises(ConfigError, match="leave-one-out-sampled"):
        leave_one_out(DATA).candidates()


# --- temporal ----------------------------------------------------------------------------


def test_temporal_cut_is_the_quantile_of_timestamps():
    # distinct timestamps, n rows: the cut is the floor(0.8 (n - 1))-th smallest
    result = temporal(DATA, quantile=0.8)
    n = len(DATA)
    expected = DATA["timestamp"].sort_values().iloc[int(np.floor(0.8 * (n - 1)))]
    assert result.options["cut"] == expected
    assert len(result.train) == int(np.floor(0.8 * (n - 1))) + 1


def test_temporal_trains_up_to_the_cut_and_tests_strictly_after():
    result = temporal(DATA)
    cut = result.options["cut"]
    assert (result.train["timestamp"] <= cut).all()
    assert (result.test["timestamp"] > cut).all()
    assert result.test["user_id"].isin(result.train["user_id"]).all()
    assert result.test["item_id"].isin(result.train["item_id"]).all()
    assert_no_pair_leaks(result)


def test_temporal_tests_only_users_and_items_seen_before_the_cut():
    # 10 days, cut at the 0.5 quantile = day 4: days 0-4 train, days 5-9 after the cut
    pairs_by_day = [(1, 10), (1, 11), (2, 10), (2, 11), (3, 12)]  # train
    pairs_by_day += [(1, 12), (4, 10), (2, 12), (1, 99), (3, 10)]  # user 4, item 99 unknown
    data = pd.DataFrame(pairs_by_day, columns=PAIR).assign(
        rating=np.float32(4), timestamp=pd.to_datetime(np.arange(10), unit="D", utc=True)
    )
    result = temporal(data, quantile=0.5)
    assert pairs(result.train) == set(pairs_by_day[:5])
    assert pairs(result.test) == {(1, 12), (2, 12), (3, 10)}


def test_temporal_valid_quantile_carves_validation_out_of_the_pre_test_period():
    result = temporal(DATA, quantile=0.8, valid_quantile=0.6)
    valid_cut, cut = result.options["valid_cut"], result.options["cut"]
    assert (result.train["timestamp"] <= valid_cut).all()
    assert ((result.valid["timestamp"] > valid_cut) & (result.valid["timestamp"] <= cut)).all()
    assert (result.test["timestamp"] > cut).all()


def test_temporal_without_test_rows_says_to_lower_the_quantile():
    data = DATA.assign(timestamp=pd.Timestamp("2020-01-01", tz="UTC"))
    with pytest.raises(DataError, match="lower the quantile"):
        temporal(data)


# --- k-fold ------------------------------------------------------------------------------


def test_kfold_test_parts_partition_the_data():
    folds = list(kfold(DATA, k=4, seed=0))
    assert len(folds) == 4
    tests = pd.concat([f.test for f in folds], ignore_index=True)
    assert len(tests) == len(DATA) and pairs(tests) == pairs(DATA)
    for fold in folds:
        assert_partition(fold, DATA)
        assert_no_pair_leaks(fold)


def test_kfold_deals_each_users_rows_evenly_across_folds():
    folds = list(kfold(DATA, k=3, seed=0))
    per_fold = pd.concat(
        [rows_per_user(f.test).reindex(rows_per_user(DATA).index, fill_value=0) for f in folds],
        axis=1,
    )
    assert ((per_fold.max(axis=1) - per_fold.min(axis=1)) <= 1).all()


def test_kfold_needs_at_least_two_folds():
    with pytest.raises(ConfigError, match="k >= 2"):
        kfold(DATA, k=1)


# --- every protocol ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_no_user_item_pair_is_in_two_parts(name):
    assert_no_pair_leaks(split(name, DATA, seed=0))


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_the_same_seed_gives_the_same_split(name):
    assert_same_split(split(name, DATA, seed=11), split(name, DATA, seed=11))


@pytest.mark.parametrize("name", ["stratified", "random-811", "leave-one-out-sampled"])
def test_a_different_seed_gives_a_different_split(name):
    a, b = split(name, DATA, seed=1), split(name, DATA, seed=2)
    assert not (a.test.equals(b.test) and (a.negatives is None or a.negatives.equals(b.negatives)))


def test_repeated_pairs_are_collapsed_to_their_earliest_interaction():
    later = DATA.iloc[:5].assign(timestamp=DATA["timestamp"].max() + pd.Timedelta(days=1))
    result = stratified(pd.concat([DATA, later], ignore_index=True), seed=0)
    assert_partition(result, DATA)
    assert_no_pair_leaks(result)


def test_an_unknown_protocol_lists_the_valid_names():
    with pytest.raises(ConfigError, match="random-811") as info:
        split("random-82", DATA)
    assert "leave-one-out" in str(info.value)


def test_an_unknown_option_lists_the_protocols_options():
    with pytest.raises(ConfigError, match="ratio"):
        split("stratified", DATA, ratoi=0.5)


def test_split_passes_options_to_the_protocol():
    assert protocol_options("stratified") == {"ratio": 0.75, "filter_by": "user"}
    assert_same_split(split("stratified", DATA, 3, ratio=0.5), stratified(DATA, 3, ratio=0.5))


def test_a_ratio_outside_zero_one_is_a_config_error():
    with pytest.raises(ConfigError, match="ratio"):
        stratified(DATA, ratio=1.5)


def test_missing_columns_are_a_data_error():
    with pytest.raises(DataError, match="timestamp"):
        leave_one_out(DATA.drop(columns="timestamp"))


def test_empty_interactions_are_a_data_error():
    with pytest.raises(DataError, match="empty"):
        stratified(DATA.iloc[:0])


# --- invariants --------------------------------------------------------------------------

events = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 15), st.integers(1, 5), st.integers(0, 50)),
    min_size=1,
    max_size=80,
)


def frame_of(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame["rating"] = frame["rating"].astype("float32")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="D", utc=True)
    return frame


@settings(max_examples=40, deadline=None)
@given(events, st.integers(0, 2**16))
def test_splits_partition_the_deduplicated_data(rows, seed):
    data = frame_of(rows)
    unique = data.sort_values("timestamp", kind="stable").drop_duplicates(PAIR)
    for name in ("stratified", "leave-one-out", "leave-one-out-sampled"):
        result = split(name, data, seed=seed)
        assert_partition(result, unique)
        assert_no_pair_leaks(result)
    if (unique["rating"] >= 3).any():
        assert_partition(random_811(data, seed=seed), unique[unique["rating"] >= 3])
    for fold in kfold(data, k=3, seed=seed):
        assert_partition(fold, unique)


@settings(max_examples=40, deadline=None)
@given(events)
def test_leave_one_out_test_is_never_older_than_the_users_history(rows):
    result = leave_one_out(frame_of(rows))
    history = pd.concat([result.train, result.valid])
    latest = history.groupby("user_id")["timestamp"].max()
    tested = result.test.set_index("user_id")["timestamp"]
    assert (tested >= latest.loc[tested.index]).all()
