"""Retrieval: exact top-K for small catalogues, a faiss index above a size, and its recall."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.factors import factorize
from kuberec.components.models.registry import create_model
from kuberec.errors import ConfigError
from kuberec.serving.retrieval import (
    ANN_MIN_ITEMS_ENV,
    AnnIndex,
    ExactIndex,
    build_index,
    clustered_catalogue,
    masked_top_k,
    recall_at_k,
)


def _queries(items: np.ndarray, n: int = 300, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = items[rng.integers(0, len(items), n)]
    return picks + rng.standard_normal(picks.shape).astype(np.float32) * 0.5


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ann_recall_at_10_is_at_least_095_against_exact(kind: str) -> None:
    items = clustered_catalogue(30_000, 32, seed=3)
    queries = _queries(items)
    recall = recall_at_k(AnnIndex(items, kind=kind), ExactIndex(items), queries, k=10)
    assert recall >= 0.95


def test_small_catalogues_are_searched_exactly_and_large_ones_by_ann(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = clustered_catalogue(2_000, 8)
    assert isinstance(build_index(items), ExactIndex)  # default threshold 50,000
    monkeypatch.setenv(ANN_MIN_ITEMS_ENV, "1000")
    assert isinstance(build_index(items), AnnIndex)


def test_a_bad_ann_threshold_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ANN_MIN_ITEMS_ENV, "many")
    with pytest.raises(ConfigError, match=ANN_MIN_ITEMS_ENV):
        build_index(clustered_catalogue(10, 4))


def test_exact_search_returns_the_best_items_best_first() -> None:
    items = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    found, scores = ExactIndex(items).search(np.array([[1.0, 0.1]], np.float32), 2)
    assert found.tolist() == [[2, 0]]
    assert scores[0].tolist() == pytest.approx([2.0, 1.0])


def test_masked_top_k_drops_excluded_and_disallowed_items_and_pads_short_rows() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    allowed = np.array([True, True, True, False])
    items, values = masked_top_k(scores, 3, exclude=[[0]], allowed=allowed)
    assert items.tolist() == [[1, 2, -1]]
    assert values[0, 2] == -np.inf


@pytest.mark.parametrize(("n_items", "k"), [(1_682, 1_000), (5_000, 1_000), (300, 65)])
def test_a_deep_top_k_is_the_best_k_best_first_as_torch_topk_gives_it(n_items: int, k: int) -> None:
    scores = torch.randn(4, n_items, generator=torch.Generator().manual_seed(n_items))
    items, values = masked_top_k(scores, k, exclude=[[0, 1], [], [5], []])
    masked = scores.clone()
    masked[0, [0, 1]] = -np.inf
    masked[2, 5] = -np.inf
    expected_values, expected_items = torch.topk(masked, k, dim=1)
    assert items.tolist() == expected_items.tolist()  # random scores: no ties
    assert np.array_equal(values, expected_values.numpy())


def test_matrix_factorisation_scores_are_the_dot_product_of_its_factors() -> None:
    model = create_model("mf", DataSchema(n_users=5, n_items=7), {"dim": 4}).eval()
    factors = factorize(model)
    assert factors is not None
    users = torch.tensor([0, 3, -1])  # -1: an unknown user
    vectors = factors.user_vectors(users, None).numpy()
    expected = model.score(users).detach().numpy()
    assert np.allclose(vectors @ factors.items.T, expected, atol=1e-5)


def test_models_whose_scores_are_no_dot_product_are_not_factorized() -> None:
    model = create_model("ease", DataSchema(n_users=3, n_items=4), {})
    assert factorize(model) is None
