"""The recommendation step: exclusions, filters, short candidate sets and tie-breaking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import UserHistory, build_model, genre_mask, recommend, top_k
from kuberec.components.models.encoded import EncodedData
from kuberec.errors import ConfigError


@pytest.fixture
def tiny() -> EncodedData:
    return EncodedData.from_dataset(generate(SyntheticSpec(5, 8, 20, seed=1)))


SCORES = np.array([[0.1, 0.9, 0.5, 0.7, 0.3], [5.0, 4.0, 3.0, 2.0, 1.0]])


def test_top_k_orders_by_score() -> None:
    result = top_k(SCORES, 3)
    np.testing.assert_array_equal(result.items, [[1, 3, 2], [0, 1, 2]])
    np.testing.assert_allclose(result.scores, [[0.9, 0.7, 0.5], [5.0, 4.0, 3.0]])


def test_top_k_accepts_tensors() -> None:
    result = top_k(torch.tensor(SCORES), 2)
    np.testing.assert_array_equal(result.items, [[1, 3], [0, 1]])


def test_seen_items_are_excluded() -> None:
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0, 0], [1, 1, 0, 0, 0]]))
    result = top_k(SCORES, 2, exclude=seen)
    np.testing.assert_array_equal(result.items, [[3, 2], [2, 3]])


def test_allowed_items_filter_the_candidates() -> None:
    by_index = top_k(SCORES, 5, allowed=np.array([0, 4]))
    by_mask = top_k(SCORES, 5, allowed=np.array([True, False, False, False, True]))
    np.testing.assert_array_equal(by_index.items, [[4, 0], [0, 4]])
    np.testing.assert_array_equal(by_mask.items, by_index.items)


def test_k_larger_than_the_candidates_returns_all_of_them_padded() -> None:
    seen = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 1]], dtype=bool)
    result = top_k(SCORES, 10, exclude=seen)
    np.testing.assert_array_equal(result.counts, [2, 4])
    np.testing.assert_array_equal(result.items, [[3, 4, -1, -1], [0, 1, 2, 3]])
    assert np.isneginf(result.scores[0, 2:]).all()
    np.testing.assert_array_equal(result.row(0)[0], [3, 4])


def test_ties_go_to_the_lower_item_index_also_at_the_cut() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 1.0, 2.0, 2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(top_k(scores, 3).items, [[1, 2, 4]])
    np.testing.assert_array_equal(top_k(np.zeros((1, 6)), 4).items, [[0, 1, 2, 3]])


def test_a_row_scored_mostly_zero_keeps_the_exact_order_and_tie_rule() -> None:
    rng = np.random.default_rng(0)
    scores = np.where(rng.random((3, 5000)) < 0.05, rng.random((3, 5000)), 0.0)
    seen = rng.random((3, 5000)) < 0.002
    result = top_k(scores, 1000, exclude=seen)
    key = np.where(seen, -np.inf, scores)
    expected = np.argsort(-key, axis=1, kind="stable")[:, :1000]  # ties: lower index first
    np.testing.assert_array_equal(result.items, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_with_and_without_ties_at_the_cut_all_follow_the_tie_rule(dtype: type) -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (6, 300)).astype(dtype)  # heavy ties in every row
    scores[0] = rng.permutation(300)  # a row with no ties at all
    seen = rng.random((6, 300)) < 0.1
    result = top_k(torch.from_numpy(scores), 25, exclude=seen)
    key = np.where(seen, -np.inf, scores.astype(np.float64))
    np.testing.assert_array_equal(result.items, np.argsort(-key, axis=1, kind="stable")[:, :25])


def test_subnormal_keys_still_rank_by_value() -> None:
    scores = np.array([[1e-310, 3e-310, 2e-310, 0.0, 4e-310]])
    np.testing.assert_array_equal(top_k(scores, 2).items, [[4, 1]])


def test_nan_scores_rank_last_but_stay_candidates() -> None:
    result = top_k(np.array([[np.nan, 1.0, np.nan]]), 3, exclude=np.array([[0, 0, 1]]))
    np.testing.assert_array_equal(result.items, [[1, 0]])


def test_bad_k_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        top_k(SCORES, 0)


def test_genre_mask_selects_items_with_any_listed_genre() -> None:
    genres = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(
        genre_mask(genres, ["Drama", "Comedy"], ["Comedy"]), [False, True, True, False]
    )
    with pytest.raises(ConfigError, match="unknown genre"):
        genre_mask(genres, ["Drama", "Comedy"], ["Western"])


def test_recommend_excludes_each_users_history_and_maps_ids(tiny: EncodedData) -> None:
    model = build_model("popularity", tiny, {})
    users = np.arange(tiny.n_users)
    result = recommend(model, tiny.history, users, 3, batch_size=2)
    seen = tiny.seen.toarray().astype(bool)
    for user in users:
        items, _ = result.row(user)
        assert not seen[user, items].any()
    frame = result.to_frame(tiny.user_index.decode(users), tiny.item_index)
    assert list(frame.columns) == ["user_id", "item_id", "score", "rank"]
    assert set(frame["item_id"]) <= set(tiny.item_index.ids.tolist())


def test_unknown_users_get_unpersonalised_lists(tiny: EncodedData) -> None:
    model = build_model("item_knn", tiny, {})
    result = recommend(model, tiny.history, np.array([-1]), 3)
    assert result.counts[0] == 3  # nothing seen, no history: every item is a candidate


def test_user_history_save_and_load_round_trip(tmp_path: Path, tiny: EncodedData) -> None:
    tiny.history.save(tmp_path / "h.npz")
    loaded = UserHistory.load(tmp_path / "h.npz")
    users = np.arange(tiny.n_users)
    np.testing.assert_array_equal(loaded.recent(users, 4), tiny.history.recent(users, 4))
