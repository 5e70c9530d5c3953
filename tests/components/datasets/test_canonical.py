"""The canonical form and the id index saved beside every model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberec.components.datasets.atomic import atomic_path
from kuberec.components.datasets.canonical import Dataset, IdIndex, empty_items
from kuberec.errors import DataError


def test_id_index_is_sorted_and_dense() -> None:
    index = IdIndex.fit([30, 10, 20, 10])
    assert index.ids.tolist() == [10, 20, 30]
    assert index.encode([20, 10]).tolist() == [1, 0]


@given(st.lists(st.one_of(st.integers(-(10**9), 10**9), st.text(min_size=1)), min_size=1))
def test_id_index_round_trips_any_mix_of_ids(ids: list[object]) -> None:
    index = IdIndex.fit(ids)
    assert index.decode(index.encode(ids)) == ids


def test_id_index_survives_save_and_load(tmp_path: Path) -> None:
    index = IdIndex.fit(["b", "a", "c"])
    index.save(tmp_path / "items.json")
    assert IdIndex.load(tmp_path / "items.json").ids.tolist() == ["a", "b", "c"]


def test_unknown_ids_raise_unless_a_stand_in_is_given() -> None:
    index = IdIndex.fit([1, 2])
    with pytest.raises(DataError, match="unknown id 3"):
        index.encode([3])
    assert index.encode([3], unknown=-1).tolist() == [-1]


def test_a_dataset_without_interactions_is_refused() -> None:
    empty = pd.DataFrame(columns=["user_id", "item_id", "rating", "timestamp"])
    with pytest.raises(DataError, match="no interactions"):
        Dataset("x", empty, empty_items(), pd.DataFrame({"user_id": []}))


def test_a_failed_write_keeps_the_previous_folder(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.parquet").write_text("half")
        raise RuntimeError("disk full")
    assert [p.name for p in target.iterdir()] == ["old.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"], "no temporary left behind"


def test_a_successful_write_replaces_the_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.parquet").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.parquet"]
