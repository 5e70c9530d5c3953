"""EASE and EASE-T: the closed form, the time kernel, and their limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import EncodedData, build_model, recommend
from kuberec.components.models.ease import closed_form
from kuberec.errors import ConfigError


@pytest.fixture(scope="module")
def data() -> EncodedData:
    return EncodedData.from_dataset(generate(SyntheticSpec(120, 60, 2500, seed=4)))


def test_closed_form_solves_the_constrained_least_squares() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((40, 6)) < 0.4).astype(float)
    weights = closed_form(x.T @ x, lam=2.0)
    assert np.allclose(np.diag(weights), 0.0)
    # Column j: ridge regression of item j on the other items (Steck 2019, eq. 4).
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        direct = np.linalg.solve(a.T @ a + 2.0 * np.eye(5), a.T @ x[:, j])
        assert np.allclose(weights[others, j], direct)


def test_ease_t_without_time_mixing_is_ease(data: EncodedData) -> None:
    plain = build_model("ease", data, {"lam": 100.0})
    mixed = build_model("ease_t", data, {"lam": 100.0, "time_mix": 0.0})
    assert torch.allclose(plain.weights, mixed.weights)


def test_the_time_kernel_changes_the_weights(data: EncodedData) -> None:
    plain = build_model("ease", data, {"lam": 100.0})
    timed = build_model("ease_t", data, {"lam": 100.0, "time_mix": 0.7})
    assert not torch.allclose(plain.weights, timed.weights)


def test_scores_are_the_history_row_times_the_weights(data: EncodedData) -> None:
    model = build_model("ease_t", data).eval()
    top = recommend(model, data.history, [0], data.n_items)
    row = np.zeros(data.n_items)
    row[data.history.of(0)] = 1.0
    expected = row @ model.weights.numpy()
    kept = top.items[0][top.items[0] >= 0]
    assert np.allclose(top.scores[0][: len(kept)], expected[kept], atol=1e-4)


def test_a_catalogue_above_max_items_is_refused_with_advice(data: EncodedData) -> None:
    with pytest.raises(ConfigError, match=r"above max_items \(10\).*two_tower"):
        build_model("ease", data, {"max_items": 10})


def test_lambda_must_be_positive(data: EncodedData) -> None:
    with pytest.raises(ConfigError, match="ease hyperparameter 'lam'"):
        build_model("ease", data, {"lam": 0.0})
