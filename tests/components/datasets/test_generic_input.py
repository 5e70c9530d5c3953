"""Interaction, item and user files as product teams bring them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kuberec.components.datasets.generic import load_files
from kuberec.errors import DataError


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_string_ids_are_kept_as_given(tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", "user_id,item_id\nu-007,sku-1\nu-8,sku-2\n")
    dataset = load_files(path)
    assert dataset.interactions["user_id"].tolist() == ["u-007", "u-8"]
    assert dataset.interactions["item_id"].tolist() == ["sku-1", "sku-2"]


def test_plain_integer_ids_become_int64_but_leading_zeros_stay_text(tmp_path: Path) -> None:
    ints = load_files(_write(tmp_path / "a.csv", "user_id,item_id\n1,10\n2,20\n"))
    zeros = load_files(_write(tmp_path / "b.csv", "user_id,item_id\n007,10\n8,20\n"))
    assert ints.interactions["user_id"].dtype == "int64"
    assert zeros.interactions["user_id"].tolist() == ["007", "8"]


def test_rating_and_timestamp_are_optional(tmp_path: Path) -> None:
    dataset = load_files(_write(tmp_path / "i.csv", "user_id,item_id\n1,10\n"))
    assert not dataset.has_ratings and not dataset.has_timestamps
    assert dataset.interactions["rating"].isna().all()


def test_column_names_are_mappable(tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", "customer,sku,stars,when\nc1,s1,5,2024-05-01T12:00:00Z\n")
    columns = {"user_id": "customer", "item_id": "sku", "rating": "stars", "timestamp": "when"}
    dataset = load_files(path, columns=columns)
    row = dataset.interactions.iloc[0]
    assert (row["user_id"], row["item_id"], row["rating"]) == ("c1", "s1", 5.0)
    assert row["timestamp"] == pd.Timestamp("2024-05-01T12:00:00Z")


def test_parquet_input_reads_like_csv(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": ["a", "b"], "rating": [1.0, 2.0]}).to_parquet(path)
    dataset = load_files(path)
    assert dataset.interactions["user_id"].dtype == "int64"
    assert dataset.interactions["rating"].tolist() == [1.0, 2.0]


def test_a_missing_column_is_named_with_how_to_map_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", "customer,item_id\n1,2\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['user_id'\].*--column user_id="):
        load_files(path)


def test_a_non_numeric_rating_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", "user_id,item_id,rating\n1,2,4\n1,3,\n")
    with pytest.raises(DataError, match=r"i.csv, line 3, column 'rating': an empty value"):
        load_files(path)


def test_an_unparseable_timestamp_names_the_line_and_the_formats(tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", "user_id,item_id,timestamp\n1,2,1700000000\n1,3,yesterday\n")
    with pytest.raises(DataError, match=r"line 3, column 'timestamp': 'yesterday'.*ISO-8601"):
        load_files(path)


def test_an_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="the file is empty"):
        load_files(_write(tmp_path / "i.csv", ""))
    with pytest.raises(DataError, match="no rows"):
        load_files(_write(tmp_path / "j.csv", "user_id,item_id\n"))


def test_items_file_gives_titles_genres_text_and_year(tmp_path: Path) -> None:
    inter = _write(tmp_path / "i.csv", "user_id,item_id\n1,10\n1,11\n")
    items = _write(
        tmp_path / "items.csv",
        "item_id,title,genres,text,year\n10,Boots,Shoes|Outdoor,waterproof leather,2021\n",
    )
    table = load_files(inter, items=items).items.set_index("item_id")
    assert list(table.loc[10, "genres"]) == ["Shoes", "Outdoor"]
    assert (table.loc[10, "text"], table.loc[10, "year"]) == ("waterproof leather", 2021)
    assert table.loc[11, "title"] == "", "items missing from the items file still get a row"


def test_user_attributes_keep_their_types(tmp_path: Path) -> None:
    inter = _write(tmp_path / "i.csv", "user_id,item_id\n1,10\n")
    users = _write(tmp_path / "u.csv", "user_id,age,plan\n1,31,gold\n")
    table = load_files(inter, users=users).users
    assert table["age"].tolist() == [31] and table["plan"].tolist() == ["gold"]


def test_ids_spelt_differently_across_files_are_refused(tmp_path: Path) -> None:
    inter = _write(tmp_path / "i.csv", "user_id,item_id\n1,10\n")
    items = _write(tmp_path / "items.csv", "item_id,title\nsku-10,Boots\n")
    with pytest.raises(DataError, match="spelt the same way"):
        load_files(inter, items=items)


def test_mapping_an_unknown_canonical_name_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match="map only"):
        load_files(path, columns={"customer": "user_id"})


@pytest.mark.parametrize("column", ["user_id", "item_id"])
def test_an_empty_id_names_the_file_line_and_column(tmp_path: Path, column: str) -> None:
    rows = {"user_id": "1,10\n,11\n", "item_id": "1,10\n2,\n"}[column]
    path = _write(tmp_path / "i.csv", "user_id,item_id\n" + rows)
    with pytest.raises(DataError, match=rf"i.csv, line 3, column '{column}': an empty value"):
        load_files(path)


def test_a_blank_mapped_id_names_the_files_own_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", "customer,sku\nc1,s1\n  ,s2\n")
    with pytest.raises(DataError, match=r"line 3, column 'customer': an empty value"):
        load_files(path, columns={"user_id": "customer", "item_id": "sku"})


def test_a_missing_id_in_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": ["a", None], "item_id": ["x", "y"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"i.parquet, line 2, column 'user_id': an empty value"):
        load_files(path)


@pytest.mark.parametrize("which", ["items", "users"])
def test_an_empty_id_in_the_items_or_users_file_is_refused(tmp_path: Path, which: str) -> None:
    inter = _write(tmp_path / "i.csv", "user_id,item_id\n1,10\n")
    column = "item_id" if which == "items" else "user_id"
    side = _write(tmp_path / f"{which}.csv", f"{column},title\n10,Boots\n,Socks\n")
    with pytest.raises(DataError, match=rf"{which}.csv, line 3, column '{column}': an empty"):
        load_files(inter, **{which: side})
