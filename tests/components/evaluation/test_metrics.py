"""Specification of the offline metrics: hand-computed examples, then invariants."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuberec.components.evaluation import (
    auc,
    average_popularity,
    catalogue_coverage,
    hit_rate_at_k,
    intra_list_diversity,
    map_at_k,
    mean_user_auc,
    mrr_at_k,
    multi_hot,
    ndcg_at_k,
    novelty,
    per_user_metrics,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    slice_report,
    top_k,
)
from kuberec.errors import ConfigError, DataError

LOG2_3 = math.log2(3)  # 1.5849625...


def truth_of(pairs: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, i) for u, items in pairs.items() for i in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


def scored(rows: list[tuple[object, object, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "score"])


# --- precision, recall -------------------------------------------------------------------


def test_precision_divides_hits_in_top_k_by_k():
    # top-3 of [a, b, c, d] is a, b, c; relevant {a, c, e}: 2 hits / K=3
    recs = {"u": ["a", "b", "c", "d"]}
    assert precision_at_k(recs, truth_of({"u": ["a", "c", "e"]}), 3) == pytest.approx(2 / 3)


def test_precision_counts_missing_slots_as_misses_when_the_list_is_shorter_than_k():
    # one hit in a 1-item list, K=5: 1/5 (MS Recommenders / Spark divide by K)
    assert precision_at_k({"u": ["a"]}, truth_of({"u": ["a"]}), 5) == pytest.approx(0.2)


def test_recall_divides_hits_by_the_number_of_relevant_items():
    # top-2 of [a, b, c] is a, b; relevant {a, c, e}: 1 hit / 3 relevant
    assert recall_at_k({"u": ["a", "b", "c"]}, truth_of({"u": ["a", "c", "e"]}), 2) == (
        pytest.approx(1 / 3)
    )


def test_k_larger_than_the_candidate_list_uses_the_whole_list():
    # K=10 but only 2 candidates, both relevant: recall 2/2, NDCG 1, precision 2/10
    result = ranking_metrics({"u": ["a", "b"]}, truth_of({"u": ["a", "b"]}), 10)
    assert result["recall"] == pytest.approx(1.0)
    assert result["ndcg"] == pytest.approx(1.0)
    assert result["precision"] == pytest.approx(0.2)


# --- NDCG --------------------------------------------------------------------------------


def test_ndcg_uses_log2_discount_and_ideal_dcg_over_min_k_relevant():
    # hits at ranks 1 and 3: DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    # 3 relevant, K=3: IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309...
    expected = 1.5 / (1 + 1 / LOG2_3 + 0.5)  # 0.7039...
    recs = {"u": ["a", "b", "c", "d"]}
    assert ndcg_at_k(recs, truth_of({"u": ["a", "c", "e"]}), 3) == pytest.approx(expected)


def test_ndcg_ideal_is_capped_at_k_when_more_items_are_relevant():
    # 5 relevant, K=2, hit at rank 2 only: DCG = 1/log2(3)
    # IDCG over min(2, 5) = 2 slots: 1 + 1/log2(3)
    expected = (1 / LOG2_3) / (1 + 1 / LOG2_3)  # 0.3868...
    truth = truth_of({"u": ["a", "b", "c", "d", "e"]})
    assert ndcg_at_k({"u": ["x", "a", "b"]}, truth, 2) == pytest.approx(expected)


# --- MAP ---------------------------------------------------------------------------------


def test_map_averages_the_precision_at_each_hit():
    # list [b, a, d, c], relevant {a, c}: hits at 2 and 4
    # precision at hit 1: 1/2, at hit 2: 2/4; sum 1.0, divided by |R| = 2
    assert map_at_k({"u": ["b", "a", "d", "c"]}, truth_of({"u": ["a", "c"]}), 4) == (
        pytest.approx(0.5)
    )


def test_map_divides_by_all_relevant_items_as_the_ms_recommenders_benchmark_reports():
    # top-2 of [a, b, c] hits a at rank 1: sum of precisions = 1/1
    # MS Recommenders `map` (the benchmark's "MAP" column): / |R| = 3  ->  1/3
    truth = truth_of({"u": ["a", "c", "e"]})
    assert map_at_k({"u": ["a", "b", "c"]}, truth, 2) == pytest.approx(1 / 3)


def test_map_capped_divides_by_min_k_and_relevant_items():
    # same hits; MS Recommenders' current `map_at_k`: / min(K=2, |R|=3) = 2  ->  1/2
    truth = truth_of({"u": ["a", "c", "e"]})
    assert map_at_k({"u": ["a", "b", "c"]}, truth, 2, denominator="capped") == pytest.approx(0.5)


# --- hit rate, MRR -----------------------------------------------------------------------


def test_hit_rate_is_the_share_of_users_with_any_hit_in_top_k():
    # u1 hits a, u2's top-1 is y (miss): (1 + 0) / 2
    recs = {"u1": ["a"], "u2": ["y", "b"]}
    assert hit_rate_at_k(recs, truth_of({"u1": ["a"], "u2": ["b"]}), 1) == pytest.approx(0.5)


def test_mrr_uses_the_rank_of_the_first_hit_only():
    # u1: [b, c, a] with relevant {a, c}: first hit at rank 2 -> 1/2; u2: no hit -> 0
    recs = {"u1": ["b", "c", "a"], "u2": ["x"]}
    truth = truth_of({"u1": ["a", "c"], "u2": ["z"]})
    assert mrr_at_k(recs, truth, 3) == pytest.approx((0.5 + 0.0) / 2)


# --- who is averaged ---------------------------------------------------------------------


def test_users_without_relevant_items_are_excluded_from_averages():
    # u2 has a list but no ground truth: only u1 (precision 1/1) is averaged
    recs = {"u1": ["a"], "u2": ["b"]}
    assert precision_at_k(recs, truth_of({"u1": ["a"]}), 1) == pytest.approx(1.0)


def test_a_ground_truth_user_without_a_list_scores_zero():
    # u1 perfect (NDCG 1), u2 has relevant items but no list (0): (1 + 0) / 2
    recs = {"u1": ["a"]}
    assert ndcg_at_k(recs, truth_of({"u1": ["a"], "u2": ["b"]}), 1) == pytest.approx(0.5)


def test_per_user_metrics_has_one_row_per_ground_truth_user():
    table = per_user_metrics({"u1": ["a", "b"]}, truth_of({"u1": ["b"], "u2": ["c"]}), 2)
    assert table["user_id"].tolist() == ["u1", "u2"]
    assert table["n_relevant"].tolist() == [1, 1]
    # u1: hit at rank 2 -> MRR 1/2; u2: nothing
    assert table["mrr"].tolist() == pytest.approx([0.5, 0.0])


def test_duplicate_ground_truth_rows_count_once():
    truth = truth_of({"u": ["a", "a", "b"]})  # |R| = 2, not 3
    assert recall_at_k({"u": ["a"]}, truth, 1) == pytest.approx(0.5)


# --- ordering and ties -------------------------------------------------------------------


def test_score_ties_are_broken_by_item_id_ascending():
    # c and a tie at 1.0: a comes first by id, so top-1 is a
    recs = scored([("u", "c", 1.0), ("u", "a", 1.0), ("u", "b", 0.5)])
    assert precision_at_k(recs, truth_of({"u": ["a"]}), 1) == pytest.approx(1.0)
    assert precision_at_k(recs.iloc[::-1], truth_of({"u": ["a"]}), 1) == pytest.approx(1.0)


def test_rank_ties_are_broken_by_item_id_and_rank_wins_over_score():
    recs = pd.DataFrame(
        {"user_id": ["u"] * 3, "item_id": [3, 1, 2], "rank": [1, 1, 2], "score": [9, 0, 0]}
    )
    assert top_k(recs, 3)["item_id"].tolist() == [1, 3, 2]


def test_nan_scores_rank_last():
    recs = scored([("u", "a", float("nan")), ("u", "b", 0.1)])
    assert top_k(recs, 2)["item_id"].tolist() == ["b", "a"]


def test_a_repeated_recommendation_keeps_its_best_slot_and_does_not_use_another():
    # [b, b, a] -> [b, a]: the hit a is at rank 2, so precision@2 = 1/2
    assert precision_at_k({"u": ["b", "b", "a"]}, truth_of({"u": ["a"]}), 2) == pytest.approx(0.5)


def test_a_repeated_row_in_a_score_frame_does_not_push_items_out_of_top_k():
    # item 0 listed twice (scores 100 and 10); items 1..9 score 9..1. top-2 is [0, 1]
    frame = scored([("u", i, 10.0 - i) for i in range(10)] + [("u", 0, 100.0)])
    assert top_k(frame, 2)["item_id"].tolist() == [0, 1]


def test_frame_and_mapping_inputs_give_the_same_metrics():
    frame = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "c", "a"], "rank": [1, 2, 1, 2]}
    )
    mapping = {"u1": ["a", "b"], "u2": ["c", "a"]}
    truth = truth_of({"u1": ["b"], "u2": ["a", "c"]})
    assert ranking_metrics(frame, truth, 2) == ranking_metrics(mapping, truth, 2)


def test_a_full_score_frame_ranks_like_a_naive_sort():
    # exercises the per-user partition shortcut against pandas sorting
    rng = np.random.default_rng(7)
    users, items = np.arange(30), np.arange(50)
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(users, len(items)),
            "item_id": np.tile(items, len(users)),
            "score": rng.integers(0, 5, len(users) * len(items)).astype(float),  # many ties
        }
    )
    expected = (
        frame.sort_values(["user_id", "score", "item_id"], ascending=[True, False, True])
        .groupby("user_id")
        .head(5)
    )
    got = top_k(frame.sample(frac=1.0, random_state=1), 5)
    assert list(zip(got["user_id"], got["item_id"], strict=True)) == list(
        zip(expected["user_id"], expected["item_id"], strict=True)
    )


# --- errors ------------------------------------------------------------------------------


def test_k_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="positive integer"):
        precision_at_k({"u": ["a"]}, truth_of({"u": ["a"]}), 0)


def test_an_unknown_metric_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="ndcg"):
        ranking_metrics({"u": ["a"]}, truth_of({"u": ["a"]}), 1, metrics=["ndgc"])


def test_recommendations_need_a_rank_or_score_column():
    with pytest.raises(DataError, match=r"'rank'.*'score'"):
        precision_at_k(pd.DataFrame({"user_id": [1], "item_id": [1]}), truth_of({}), 1)


def test_ids_of_different_types_are_rejected_rather_than_never_matching():
    recs = pd.DataFrame({"user_id": [1], "item_id": [7], "rank": [1]})
    truth = pd.DataFrame({"user_id": [1], "item_id": ["7"]})
    with pytest.raises(DataError, match="item_id"):
        precision_at_k(recs, truth, 1)


# --- AUC ---------------------------------------------------------------------------------


def test_auc_is_the_share_of_positive_negative_pairs_ordered_correctly():
    # positives 0.9, 0.3; negatives 0.8, 0.1
    # pairs: 0.9>0.8 yes, 0.9>0.1 yes, 0.3>0.8 no, 0.3>0.1 yes -> 3/4
    assert auc([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]) == pytest.approx(0.75)


def test_auc_counts_a_tie_between_a_positive_and_a_negative_as_half():
    # positive 0.5; negatives 0.5 (tie: 1/2) and 0.2 (1) -> 1.5 / 2
    assert auc([0.5, 0.5, 0.2], [True, False, False]) == pytest.approx(0.75)


def test_auc_of_a_constant_scorer_is_one_half():
    assert auc([1.0] * 5, [1, 0, 1, 0, 0]) == pytest.approx(0.5)


def test_auc_needs_positives_and_negatives():
    with pytest.raises(DataError, match="positives and negatives"):
        auc([0.1, 0.2], [1, 1])


def test_mean_user_auc_averages_each_users_auc_and_skips_single_class_users():
    # u1: 0.9 vs 0.1 -> 1; u2: positive 0.2 vs 0.8 (0) and 0.2 (tie, 1/2) -> 0.25
    # u3 has only a positive: no AUC, excluded. Mean (1 + 0.25) / 2
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u2", "u3"],
            "score": [0.9, 0.1, 0.2, 0.8, 0.2, 0.5],
            "label": [1, 0, 1, 0, 0, 1],
        }
    )
    assert mean_user_auc(frame) == pytest.approx(0.625)


# --- beyond accuracy ---------------------------------------------------------------------

TRAIN = pd.DataFrame({"user_id": ["x", "y", "x", "y"], "item_id": [1, 1, 2, 3]})
# item 1: 2 of 4 interactions (p = 1/2), items 2 and 3: 1 of 4 (p = 1/4)


def test_catalogue_coverage_is_the_share_of_catalogue_items_in_any_top_k_list():
    recs = {"u1": [1, 2], "u2": [2, 3]}
    # K=2: {1, 2, 3} of 5 items; K=1: {1, 2} of 5
    assert catalogue_coverage(recs, [1, 2, 3, 4, 5], 2) == pytest.approx(3 / 5)
    assert catalogue_coverage(recs, [1, 2, 3, 4, 5], 1) == pytest.approx(2 / 5)


def test_catalogue_coverage_ignores_items_outside_the_catalogue():
    assert catalogue_coverage({"u": [1, 99]}, [1, 2], 2) == pytest.approx(1 / 2)


def test_novelty_is_the_mean_self_information_of_recommended_items():
    # -log2 p: item 1 -> 1 bit, item 2 -> 2 bits; item 9 never seen in train: left out
    # slots: u1 (1, 2), u2 (1, 9) -> (1 + 2 + 1) / 3
    assert novelty({"u1": [1, 2], "u2": [1, 9]}, TRAIN, 2) == pytest.approx(4 / 3)


def test_average_popularity_averages_each_users_mean_train_count():
    # counts: item 1 -> 2, item 2 -> 1, item 9 -> 0
    # u1: (2 + 1) / 2 = 1.5; u2: (2 + 0) / 2 = 1.0; mean 1.25
    assert average_popularity({"u1": [1, 2], "u2": [1, 9]}, TRAIN, 2) == pytest.approx(1.25)


FEATURES = pd.DataFrame({"f1": [1.0, 0.0, 1.0], "f2": [0.0, 1.0, 1.0]}, index=["a", "b", "c"])
COS_AC = 1 / math.sqrt(2)  # cos([1,0], [1,1]) = 0.7071...


def test_intra_list_diversity_is_one_minus_mean_pairwise_cosine_similarity():
    # u1 [a, b]: cos 0 -> 1; u2 [a, c]: 1 - 0.7071 = 0.2929
    # u3 [a, b, c]: pairs ab 0, ac 0.7071, bc 0.7071 -> 1 - 1.4142/3 = 0.5286
    # u4 [a]: no pair, excluded
    recs = {"u1": ["a", "b"], "u2": ["a", "c"], "u3": ["a", "b", "c"], "u4": ["a"]}
    per_user = [1.0, 1 - COS_AC, 1 - 2 * COS_AC / 3]
    assert intra_list_diversity(recs, FEATURES, 3) == pytest.approx(np.mean(per_user))


def test_intra_list_diversity_needs_features_for_every_recommended_item():
    with pytest.raises(DataError, match="'z'"):
        intra_list_diversity({"u": ["a", "z"]}, FEATURES, 2)


def test_multi_hot_turns_genre_lists_into_zero_one_columns():
    items = pd.DataFrame({"item_id": [1, 2], "genres": [["Drama", "War"], []]})
    table = multi_hot(items)
    assert table.loc[1].tolist() == [1.0, 1.0]
    assert table.loc[2].tolist() == [0.0, 0.0]


# --- slices ------------------------------------------------------------------------------


def slice_fixture() -> tuple[dict[str, list[str]], pd.DataFrame, pd.DataFrame]:
    # train history: cold has 1 interaction, mid 3, heavy 5; only cold and heavy hit
    train = pd.DataFrame(
        {"user_id": ["cold"] + ["mid"] * 3 + ["heavy"] * 5, "item_id": [f"t{i}" for i in range(9)]}
    )
    recs = {"cold": ["a"], "mid": ["x"], "heavy": ["b"]}
    truth = truth_of({"cold": ["a"], "mid": ["c"], "heavy": ["b"]})
    return recs, truth, train


def test_slice_report_is_a_tidy_table_per_slice_metric_and_k():
    recs, truth, train = slice_fixture()
    report = slice_report(recs, truth, train, k=[1, 2], cold_max=1, heavy_min=5)
    assert list(report.columns) == ["slice", "metric", "k", "value", "n_users"]
    assert len(report) == 4 * 6 * 2  # slices x metrics x K


def test_slice_report_slices_users_by_their_train_history():
    recs, truth, train = slice_fixture()
    report = slice_report(recs, truth, train, k=1, cold_max=1, heavy_min=5).set_index(
        ["slice", "metric"]
    )
    # all: 2 of 3 users hit; cold and heavy hit; the regular user misses
    assert report.loc[("all", "hit_rate"), "value"] == pytest.approx(2 / 3)
    assert report.loc[("cold", "hit_rate"), ["value", "n_users"]].tolist() == [1.0, 1]
    assert report.loc[("regular", "hit_rate"), ["value", "n_users"]].tolist() == [0.0, 1]
    assert report.loc[("heavy", "hit_rate"), ["value", "n_users"]].tolist() == [1.0, 1]


def test_an_empty_slice_is_reported_with_no_users_and_nan():
    recs, truth, train = slice_fixture()
    report = slice_report(recs, truth, train, k=1, cold_max=0, heavy_min=50)
    cold = report[(report["slice"] == "cold") & (report["metric"] == "ndcg")]
    assert cold["n_users"].item() == 0
    assert math.isnan(cold["value"].item())


def test_slice_thresholds_must_leave_room_for_regular_users():
    recs, truth, train = slice_fixture()
    with pytest.raises(ConfigError, match="cold_max < heavy_min"):
        slice_report(recs, truth, train, k=1, cold_max=10, heavy_min=10)


# --- invariants --------------------------------------------------------------------------

ITEMS = list(range(12))
lists = st.dictionaries(
    st.integers(0, 5), st.lists(st.sampled_from(ITEMS), max_size=12, unique=True), max_size=6
)
relevant = st.dictionaries(
    st.integers(0, 5),
    st.lists(st.sampled_from(ITEMS), min_size=1, max_size=8, unique=True),
    min_size=1,
    max_size=6,
)


def frame_of(pairs: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(u, i) for u, items in pairs.items() for i in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id"], dtype="int64")


@settings(max_examples=60, deadline=None)
@given(lists, relevant, st.integers(1, 15))
def test_every_ranking_metric_lies_between_zero_and_one(recs, truth, k):
    for name, value in ranking_metrics(recs, frame_of(truth), k).items():
        assert 0.0 <= value <= 1.0 + 1e-12, name


@settings(max_examples=60, deadline=None)
@given(relevant, st.integers(1, 15), st.randoms(use_true_random=False))
def test_ranking_all_relevant_items_first_is_perfect(truth, k, rnd):
    ideal = {}
    for user, items in truth.items():
        others = [i for i in ITEMS if i not in items]
        rnd.shuffle(others)
        ideal[user] = list(items) + others
    result = ranking_metrics(ideal, frame_of(truth), k, map_denominator="capped")
    assert result["ndcg"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(1.0)
    assert result["hit_rate"] == pytest.approx(1.0)
    assert result["mrr"] == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5, 5), st.booleans()), min_size=2, max_size=40).filter(
        lambda rows: 0 < sum(label for _, label in rows) < len(rows)
    )
)
def test_auc_lies_in_unit_interval_and_reversing_scores_mirrors_it(rows):
    scores = np.array([s for s, _ in rows])
    labels = np.array([label for _, label in rows])
    value = auc(scores, labels)
    assert 0.0 <= value <= 1.0
    assert value + auc(-scores, labels) == pytest.approx(1.0)
