"""The cold-items protocol: withheld items never reach training, and how their ranking is scored."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation.protocols import Split, split
from kuberec.components.models.encoded import EncodedData
from kuberec.components.models.local_fit import fit
from kuberec.components.models.new_items import encode_content
from kuberec.components.train.cold_eval import (
    evaluate_cold,
    training_dataset,
    withheld_rows,
)
from kuberec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def parts(ml100k: Dataset) -> Split:
    return split("cold-items", ml100k.interactions, seed=7)


@pytest.fixture(scope="module")
def data(ml100k: Dataset, parts: Split) -> EncodedData:
    return EncodedData.from_dataset(training_dataset(ml100k, parts))


def test_no_interaction_of_a_withheld_item_reaches_training(parts: Split) -> None:
    assert not parts.train["item_id"].isin(parts.withheld_items).any()


def test_the_training_catalogue_holds_no_withheld_item(
    ml100k: Dataset, parts: Split, data: EncodedData
) -> None:
    assert not training_dataset(ml100k, parts).items["item_id"].isin(parts.withheld_items).any()
    assert (data.item_index.encode(list(parts.withheld_items), unknown=-1) == -1).all()


def test_test_is_every_interaction_with_a_withheld_item_by_a_user_with_training_rows(
    ml100k: Dataset, parts: Split
) -> None:
    ratings = ml100k.interactions
    cold = ratings[ratings["item_id"].isin(parts.withheld_items)]
    expected = cold[cold["user_id"].isin(parts.train["user_id"])]
    assert len(parts.test) == len(expected)
    assert parts.test["item_id"].isin(parts.withheld_items).all()


def test_the_share_of_items_is_withheld_and_the_seed_fixes_which(ml100k: Dataset) -> None:
    n_items = ml100k.interactions["item_id"].nunique()
    first = split("cold-items", ml100k.interactions, seed=1, share=0.1)
    again = split("cold-items", ml100k.interactions, seed=1, share=0.1)
    other = split("cold-items", ml100k.interactions, seed=2, share=0.1)
    assert len(first.withheld_items) == round(0.1 * n_items)
    assert first.withheld_items == again.withheld_items != other.withheld_items


def test_a_share_that_leaves_one_side_empty_is_refused(ml100k: Dataset) -> None:
    with pytest.raises(ConfigError, match="share must be strictly between 0 and 1"):
        split("cold-items", ml100k.interactions, share=1.0)
    with pytest.raises(DataError, match="at least one item on each side"):
        split("cold-items", ml100k.interactions.head(50), share=0.001)


def _content(ml100k: Dataset, parts: Split, data: EncodedData):  # type: ignore[no-untyped-def]
    rows = withheld_rows(ml100k, parts)
    return encode_content(rows, data.encodings, np.zeros((len(rows), 384), np.float32))


def test_the_random_baseline_hits_as_often_as_chance_says(
    ml100k: Dataset, parts: Split, data: EncodedData
) -> None:
    content = _content(ml100k, parts, data)
    result = evaluate_cold("random", data, parts, content, k=10)
    m = len(content)
    relevant = parts.test.groupby("user_id")["item_id"].nunique()
    chance = float(np.mean([1 - comb(m - r, 10) / comb(m, 10) for r in relevant]))
    assert result["hit_rate"] == pytest.approx(chance, abs=0.03)
    assert result["scored_new_items"] == m == len(parts.withheld_items)  # all have titles


def test_popularity_cannot_tell_new_items_apart_and_never_ranks_them_above_known_ones(
    ml100k: Dataset, parts: Split, data: EncodedData
) -> None:
    content = _content(ml100k, parts, data)
    assert evaluate_cold("popularity", data, parts, content, candidates="all")["hit_rate"] == 0
    cold = evaluate_cold("popularity", data, parts, content, candidates="cold")
    chance = evaluate_cold("random", data, parts, content, candidates="cold")
    assert cold["hit_rate"] == pytest.approx(chance["hit_rate"], abs=0.05)


def test_a_model_that_reads_no_text_is_refused_by_name(
    ml100k: Dataset, parts: Split, data: EncodedData
) -> None:
    model, _ = fit("ease", data)
    with pytest.raises(ConfigError, match="ease scores items by their interactions only"):
        evaluate_cold(model, data, parts, _content(ml100k, parts, data), model_type="ease")
