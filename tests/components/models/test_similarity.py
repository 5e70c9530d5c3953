"""Item similarity: on a catalogue too large to keep dense, neighbours precomputed from the
sparse Gram matrix answer exactly as the exact product does."""

from __future__ import annotations

import numpy as np
import pytest

from kuberec.components.models import similarity as similarity_module
from kuberec.components.models.encoded import UserHistory
from kuberec.components.models.similarity import DENSE_CELLS, Similarity


def _history(n_users: int, n_items: int, per_user: int, seed: int = 0) -> UserHistory:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)  # a long tail: many ties and empty rows
    rows = [
        rng.choice(n_items, per_user, replace=False, p=popularity / popularity.sum())
        for _ in range(n_users)
    ]
    indptr = np.arange(0, (n_users + 1) * per_user, per_user)
    return UserHistory(indptr, np.concatenate(rows).astype(np.int64), n_items)


@pytest.fixture(scope="module")
def history() -> UserHistory:
    history = _history(n_users=6000, n_items=4000, per_user=6)
    assert history.n_users * history.n_items > DENSE_CELLS  # the sparse path
    return history


def test_a_large_sparse_catalogue_gets_a_neighbour_table(history: UserHistory) -> None:
    assert Similarity(history).has_neighbours


def test_sparse_neighbours_find_the_same_best_match_as_the_exact_product(
    history: UserHistory,
) -> None:
    similarity = Similarity(history)
    rng = np.random.default_rng(1)
    for user in range(0, 6000, 37):
        recent = np.unique(history.of(user))
        items = rng.choice(history.n_items, 10, replace=False)
        exact = recent[np.argmax(similarity.between(recent, items), axis=0)]
        assert similarity.best_match(recent, items).tolist() == exact.tolist()


def test_sparse_neighbours_answer_most_similar_as_the_exact_row_does(
    history: UserHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = Similarity(history)
    monkeypatch.setattr(similarity_module, "SPARSE_PAIR_BUDGET", 0)
    exact = Similarity(history)
    assert not exact.has_neighbours
    for item in range(0, 4000, 41):
        got, want = fast.most_similar(item, 10), exact.most_similar(item, 10)
        assert got[0].tolist() == want[0].tolist()
        np.testing.assert_array_equal(got[1], want[1])


def test_a_table_row_lists_only_items_that_co_occur_above_its_padding(
    history: UserHistory,
) -> None:
    neighbours, sims = Similarity(history).neighbour_table()  # type: ignore[misc]
    item = int(np.argmin(np.bincount(history.items, minlength=history.n_items) > 0) or 3999)
    padded = sims[item] == 0
    assert (neighbours[item][padded] == item).all()


@pytest.mark.parametrize("embeddings", [True, False])
def test_similarities_to_a_fixed_set_equal_the_pairwise_ones(embeddings: bool) -> None:
    history = _history(n_users=300, n_items=200, per_user=5)
    vectors = np.random.default_rng(1).standard_normal((200, 16)) if embeddings else None
    similarity = Similarity(history, vectors)
    right = np.array([5, 190, 3, 77, 5])
    to_right = similarity.against(right)
    for item in (0, 3, 150):
        np.testing.assert_array_equal(
            to_right(item), similarity.between(np.array([item]), right)[0]
        )
