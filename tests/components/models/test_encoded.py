"""EncodedData: dense indices for any id type, chronological histories, feature tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.models import EncodedData
from kuberec.errors import DataError


def tiny_dataset(user_ids: list[object], item_ids: list[object]) -> Dataset:
    """3 users, 4 items; user 0 interacts out of time order, item 3 only in the catalogue."""
    u, i = user_ids, item_ids
    interactions = pd.DataFrame(
        {
            "user_id": [u[0], u[0], u[0], u[1], u[1], u[2]],
            "item_id": [i[2], i[0], i[1], i[0], i[0], i[1]],
            "rating": np.array([4, 5, np.nan, 3, 3, 1], dtype=np.float32),
            "timestamp": pd.to_datetime([30, 10, 20, 5, 6, 1], unit="s", utc=True),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [i[0], i[1], i[2], i[3]],
            "title": ["a", "b", "c", "d"],
            "year": pd.array([1995, 2003, None, 1971], dtype="Int64"),
            "genres": [["Drama"], ["Comedy", "Drama"], [], ["Horror"]],
            "text": ["", "", "", ""],
        }
    )
    users = pd.DataFrame(
        {"user_id": [u[0], u[1], u[2]], "gender": ["F", "M", None], "age": [20.0, 40.0, np.nan]}
    )
    return Dataset("tiny", interactions, items, users)


@pytest.fixture(params=["int", "str"])
def encoded(request: pytest.FixtureRequest) -> tuple[EncodedData, list[object], list[object]]:
    if request.param == "int":
        users, items = [10, 20, 30], [7, 8, 9, 100]
    else:
        users, items = ["u-b", "u-c", "u-d"], ["i-a", "i-b", "i-c", "i-z"]
    return EncodedData.from_dataset(tiny_dataset(users, items)), users, items


def test_ids_of_either_type_get_dense_indices(encoded: tuple) -> None:
    data, users, items = encoded
    assert data.n_users == 3 and data.n_items == 4  # item 3 has no interactions but an index
    assert data.user_index.decode(data.user_index.encode(users)) == users
    assert data.item_index.decode(data.item_index.encode(items)) == items


def test_histories_are_chronological_per_user(encoded: tuple) -> None:
    data, users, items = encoded
    u0 = int(data.user_index.encode([users[0]])[0])
    expected = data.item_index.encode([items[0], items[1], items[2]])  # times 10, 20, 30
    np.testing.assert_array_equal(data.history.of(u0), expected)
    assert np.all(np.diff(data.users) >= 0)


def test_recent_history_is_left_padded_with_the_pad_item(encoded: tuple) -> None:
    data, _, _ = encoded
    recent = data.history.recent(np.array([0, 2, -1]), 2)
    pad = data.n_items
    assert recent.shape == (3, 2)
    np.testing.assert_array_equal(recent[0], data.history.of(0)[-2:])
    assert recent[1, 0] == pad and recent[1, 1] == data.history.of(2)[-1]
    assert np.all(recent[2] == pad)  # an unknown user has no history


def test_seen_matrix_is_binary_even_for_repeated_pairs(encoded: tuple) -> None:
    data, _, _ = encoded
    assert data.seen.shape == (3, 4)
    assert set(np.unique(data.seen.data)) == {1.0}
    assert data.seen.nnz == 5


def test_item_features_encode_genres_and_decades(encoded: tuple) -> None:
    data, _, items = encoded
    assert data.encodings.genres == ("Comedy", "Drama", "Horror")
    row = int(data.item_index.encode([items[1]])[0])
    np.testing.assert_array_equal(data.item_genres[row], [1, 1, 0])
    years = data.item_year[data.item_index.encode(items)]
    np.testing.assert_array_equal(years, [3, 4, 0, 1])  # 1990s, 2000s, unknown, 1970s
    assert data.schema.n_year_buckets == 5


def test_user_attributes_become_indices_and_standardised_numbers(encoded: tuple) -> None:
    data, users, _ = encoded
    rows = data.user_index.encode(users)
    assert data.encodings.user_categorical == {"gender": ("F", "M")}
    np.testing.assert_array_equal(data.user_categorical[rows, 0], [1, 2, 0])
    np.testing.assert_allclose(data.user_numeric[rows, 0], [-1.0, 1.0, 0.0])


def test_text_embeddings_follow_the_items_table_rows() -> None:
    dataset = tiny_dataset([1, 2, 3], [40, 30, 20, 10])  # index order differs from row order
    vectors = np.arange(8, dtype=np.float32).reshape(4, 2)
    data = EncodedData.from_dataset(dataset, text_embeddings=vectors)
    assert data.item_text is not None
    np.testing.assert_array_equal(data.item_text[data.item_index.encode([40])[0]], [0, 1])
    assert data.schema.text_dim == 2


def test_text_embeddings_of_the_wrong_shape_are_rejected() -> None:
    with pytest.raises(DataError, match="one row per row of the items table"):
        EncodedData.from_dataset(
            tiny_dataset([1, 2, 3], [1, 2, 3, 4]), text_embeddings=np.zeros((3, 384))
        )
