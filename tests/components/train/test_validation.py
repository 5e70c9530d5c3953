"""Validation carved from a protocol's training part the way that protocol tests.

``auto`` chooses a model on this holdout, so it must look like the gate's test part
(later in time for ``temporal``, each user's last item for leave-one-out) and never
be the gate's test part itself.
"""

from __future__ import annotations

import pandas as pd
import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.evaluation import split
from kuberec.components.train.auto import AutoSpec, select
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.validation import carve_holdout, carve_validation
from kuberec.errors import DataError


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SyntheticSpec(300, 120, 8000, seed=11))


def _train_part(dataset: Dataset, protocol: str) -> Dataset:
    return dataset.with_interactions(split(protocol, dataset.interactions, seed=0).train)


def _pairs(frame: pd.DataFrame) -> set[tuple[object, object]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


def test_temporal_validation_is_later_than_every_interaction_it_is_fitted_on(
    dataset: Dataset,
) -> None:
    fit, held = carve_validation(_train_part(dataset, "temporal"), "temporal", 0.1, seed=0)
    assert len(held) > 0
    assert held["timestamp"].min() > fit.interactions["timestamp"].max()


def test_temporal_validation_holds_only_users_and_items_the_fit_part_knows(
    dataset: Dataset,
) -> None:
    fit, held = carve_validation(_train_part(dataset, "temporal"), "temporal", 0.1, seed=0)
    assert held["user_id"].isin(fit.interactions["user_id"]).all()
    assert held["item_id"].isin(fit.interactions["item_id"]).all()


def test_temporal_validation_is_about_the_fraction_asked_for(dataset: Dataset) -> None:
    train = _train_part(dataset, "temporal")
    fit, held = carve_validation(train, "temporal", 0.2, seed=0)
    assert 0.1 < len(held) / len(train.interactions) <= 0.2
    assert len(fit.interactions) >= 0.8 * len(train.interactions) - 1


@pytest.mark.parametrize("protocol", ["leave-one-out", "leave-one-out-sampled"])
def test_leave_one_out_validation_is_each_users_last_training_item(
    dataset: Dataset, protocol: str
) -> None:
    train = _train_part(dataset, protocol)
    _, held = carve_validation(train, protocol, 0.1, seed=0)
    last = train.interactions.sort_values("timestamp", kind="stable").groupby("user_id").tail(1)
    assert held["user_id"].is_unique
    assert _pairs(held) <= _pairs(last)
    assert len(held) == (train.interactions.groupby("user_id").size() >= 2).sum()


@pytest.mark.parametrize(
    "protocol", ["temporal", "leave-one-out", "leave-one-out-sampled", "stratified", "random-811"]
)
def test_validation_never_holds_the_gates_test_part(dataset: Dataset, protocol: str) -> None:
    parts = split(protocol, dataset.interactions, seed=0)
    fit, held = carve_validation(dataset.with_interactions(parts.train), protocol, 0.1, seed=0)
    assert not _pairs(held) & _pairs(parts.test)
    assert not _pairs(fit.interactions) & _pairs(parts.test)
    assert _pairs(held) | _pairs(fit.interactions) <= _pairs(parts.train)


def test_random_protocols_keep_the_random_share_per_user(dataset: Dataset) -> None:
    train = _train_part(dataset, "stratified")
    fit, held = carve_validation(train, "stratified", 0.1, seed=4)
    same_fit, same_held = carve_holdout(train, 0.1, seed=4)
    assert _pairs(held) == _pairs(same_held)
    assert _pairs(fit.interactions) == _pairs(same_fit.interactions)


def test_without_timestamps_temporal_falls_back_to_the_random_share(dataset: Dataset) -> None:
    untimed = Dataset(
        dataset.name, dataset.interactions, dataset.items, dataset.users, has_timestamps=False
    )
    _, held = carve_validation(untimed, "temporal", 0.1, seed=4)
    _, random_held = carve_holdout(untimed, 0.1, seed=4)
    assert _pairs(held) == _pairs(random_held)


def test_a_temporal_cut_with_nothing_known_after_it_says_what_to_change(
    dataset: Dataset,
) -> None:
    first = dataset.interactions.sort_values("timestamp").groupby("user_id").head(1)
    late = first.tail(20).assign(user_id=lambda f: "new-" + f["user_id"].astype(str))
    lonely = dataset.with_interactions(pd.concat([first.head(200), late]))
    with pytest.raises(DataError, match="validationFraction"):
        carve_validation(lonely, "temporal", 0.05, seed=0)


def test_auto_validates_the_way_its_protocol_splits(dataset: Dataset) -> None:
    settings = TrainSettings(backend="local", seed=0)
    spec = AutoSpec(candidates=("popularity",))
    train = _train_part(dataset, "temporal")
    assert select(train, spec, settings, protocol="temporal").validation == "temporal"
    assert select(train, spec, settings, protocol="leave-one-out").validation == "latest"
    assert select(train, spec, settings).validation == "random"
