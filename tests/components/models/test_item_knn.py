"""Item-kNN: the sparse neighbour search a million-item catalogue takes finds what the dense one
finds, and scoring is the history's sum of neighbour weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import EncodedData, build_model, item_knn
from kuberec.components.models.item_knn import _dense_top, _sparse_top


@pytest.fixture(scope="module")
def data() -> EncodedData:
    return EncodedData.from_dataset(generate(SyntheticSpec(200, 120, 2500, seed=3)))


def _columns(data: EncodedData) -> tuple[sp.csr_matrix, np.ndarray]:
    columns = sp.csc_matrix(data.seen, dtype=np.float32).T.tocsr()
    return columns, np.sqrt(np.asarray(columns.multiply(columns).sum(axis=1)).ravel())


def _positive(neighbours: np.ndarray, weights: np.ndarray, row: int) -> set[tuple[int, float]]:
    return {
        (int(j), round(float(w), 5))
        for j, w in zip(neighbours[row], weights[row], strict=True)
        if w > 0
    }


@pytest.mark.parametrize("shrink", [0.0, 3.0])
def test_sparse_search_keeps_the_dense_searchs_weights(data: EncodedData, shrink: float) -> None:
    columns, norms = _columns(data)
    _, dense = _dense_top(columns, norms, 7, shrink)
    _, sparse = _sparse_top(columns, norms, 7, shrink)
    assert np.allclose(dense, sparse, atol=1e-6)


def test_with_room_for_every_item_both_searches_find_the_same_neighbours(
    data: EncodedData,
) -> None:
    columns, norms = _columns(data)
    k = data.n_items - 1
    dense = _dense_top(columns, norms, k, 0.0)
    sparse = _sparse_top(columns, norms, k, 0.0)
    for row in range(data.n_items):
        assert _positive(*dense, row) == _positive(*sparse, row)


def test_sparse_search_fills_missing_neighbours_with_the_item_itself_at_no_weight() -> None:
    # items 0 and 1 share a user; item 2 shares none
    columns = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32).T)
    norms = np.sqrt(np.asarray(columns.sum(axis=1)).ravel())
    neighbours, weights = _sparse_top(columns, norms, 2, 0.0)
    assert neighbours[2].tolist() == [2, 2] and weights[2].tolist() == [0.0, 0.0]
    assert neighbours[0, 0] == 1 and weights[0, 0] > 0 and weights[0, 1] == 0.0


def test_a_large_catalogue_takes_the_sparse_search(
    data: EncodedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    dense = build_model("item_knn", data, {"neighbours": 7}).weights.clone()
    monkeypatch.setattr(item_knn, "DENSE_ITEMS", 10)
    called: list[int] = []
    real = item_knn._sparse_top

    def spy(*args: object) -> object:
        called.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(item_knn, "_sparse_top", spy)
    sparse = build_model("item_knn", data, {"neighbours": 7}).weights
    assert called and torch.allclose(dense, sparse, atol=1e-6)


def test_a_users_score_is_the_sum_of_its_distinct_items_neighbour_weights(
    data: EncodedData,
) -> None:
    model = build_model("item_knn", data, {"neighbours": 7})
    n = data.n_items
    expected = np.zeros((n, n), dtype=np.float32)
    np.add.at(
        expected,
        (np.repeat(np.arange(n), 7), model.neighbours.numpy().ravel()),
        model.weights.numpy().ravel(),
    )
    history = torch.tensor([[3, 5, 5, n], [n, n, n, 0]])  # n pads; 5 twice counts once
    scores = model.score(torch.tensor([0, 1]), history)
    assert torch.allclose(scores[0], torch.from_numpy(expected[3] + expected[5]))
    assert torch.allclose(scores[1], torch.from_numpy(expected[0]))


def test_new_weights_are_scored_with_not_the_cached_matrix(data: EncodedData) -> None:
    model = build_model("item_knn", data, {"neighbours": 7})
    history = torch.tensor([[3, 5]])
    before = model.score(torch.tensor([0]), history)
    model.set_buffer("weights", model.weights * 2)
    assert torch.allclose(model.score(torch.tensor([0]), history), before * 2)
