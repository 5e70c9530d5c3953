"""Sparse EASE: EASE's closed form on a per-item support, scored by sparse products."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import EncodedData, build_model, load_model, recommend, save_model
from kuberec.components.models.ease import closed_form
from kuberec.components.models.sparse_ease import _DENSE_LOOKUP_ITEMS, fit_columns, gram_matrix
from kuberec.errors import ConfigError


@pytest.fixture(scope="module")
def data() -> EncodedData:
    return EncodedData.from_dataset(generate(SyntheticSpec(150, 60, 3000, seed=5)))


def _dense(support: np.ndarray, weights: np.ndarray) -> np.ndarray:
    n_items, k = support.shape
    out = np.zeros((n_items, n_items))
    np.add.at(out, (support.ravel(), np.repeat(np.arange(n_items), k)), weights.ravel())
    return out


def test_with_every_other_item_as_support_it_is_dense_ease(data: EncodedData) -> None:
    gram = gram_matrix(data.seen)
    support, weights = fit_columns(gram, data.n_items - 1, lam=50.0)
    expected = closed_form(gram.toarray(), 50.0)
    assert np.allclose(_dense(support, weights), expected, atol=1e-5)


def test_each_column_is_the_ridge_regression_on_its_support(data: EncodedData) -> None:
    gram = gram_matrix(data.seen)
    support, weights = fit_columns(gram, 8, lam=20.0)
    dense = gram.toarray()
    for j in (0, 17, 42):
        s = support[j][weights[j] != 0]
        direct = np.linalg.solve(dense[np.ix_(s, s)] + 20.0 * np.eye(len(s)), dense[s, j])
        assert np.allclose(weights[j][weights[j] != 0], direct, atol=1e-5)


def test_large_catalogues_look_the_gram_matrix_up_by_search(
    monkeypatch: pytest.MonkeyPatch, data: EncodedData
) -> None:
    gram = gram_matrix(data.seen)
    dense_path = fit_columns(gram, 10, lam=20.0)
    monkeypatch.setattr("kuberec.components.models.sparse_ease._DENSE_LOOKUP_ITEMS", 0)
    searched = fit_columns(gram, 10, lam=20.0)
    assert data.n_items <= _DENSE_LOOKUP_ITEMS
    assert np.array_equal(dense_path[0], searched[0])
    assert np.allclose(dense_path[1], searched[1])


def test_an_item_nobody_shares_gets_no_weights() -> None:
    seen = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    support, weights = fit_columns(gram_matrix(seen), 2, lam=1.0)
    assert np.all(weights[2] == 0)
    assert weights[0, 0] > 0 and support[0, 0] == 1


def test_scores_are_the_history_row_times_the_sparse_weights(data: EncodedData) -> None:
    model = build_model("sparse_ease", data, {"neighbours": 10, "lam": 30.0}).eval()
    top = recommend(model, data.history, [3], data.n_items)
    row = np.zeros(data.n_items)
    row[data.history.of(3)] = 1.0
    expected = row @ _dense(model.support.numpy(), model.weights.numpy())
    kept = top.items[0][top.items[0] >= 0]
    assert np.allclose(top.scores[0][: len(kept)], expected[kept], atol=1e-4)


def test_a_saved_model_scores_the_same_after_loading(data: EncodedData, tmp_path: Path) -> None:
    model = build_model("sparse_ease", data, {"neighbours": 10}).eval()
    save_model(model, "sparse_ease", {"neighbours": 10}, data, tmp_path / "m")
    loaded = load_model(tmp_path / "m").model
    history = torch.as_tensor(data.history.recent([0, 1, 2], None))
    users = torch.arange(3)
    assert torch.allclose(model.score(users, history), loaded.score(users, history))


def test_neighbours_must_be_positive(data: EncodedData) -> None:
    with pytest.raises(ConfigError, match="sparse_ease hyperparameter 'neighbours'"):
        build_model("sparse_ease", data, {"neighbours": 0})
