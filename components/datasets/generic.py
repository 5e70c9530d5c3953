"""What product teams bring: interaction, item and user files in CSV or Parquet.

Interactions need a user and an item column (names mappable); rating and
timestamp are optional. Ids stay as given: a column whose every value is a
plain integer (no leading zeros) becomes int64, anything else stays text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.components.datasets.canonical import Dataset, empty_items
from kuberec.components.datasets.parsing import (
    parse_numeric,
    parse_timestamps,
    read_table,
    require_columns,
    require_values,
)
from kuberec.errors import DataError

CANONICAL_FIELDS = ("user_id", "item_id", "rating", "timestamp")
_PLAIN_INT = re.compile(r"^-?(0|[1-9]\d{0,17})$")
_NO_TIME = pd.Timestamp(0, tz="UTC")


def load_files(
    interactions: Path,
    items: Path | None = None,
    users: Path | None = None,
    columns: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Dataset:
    """Read the files into canonical form; ``columns`` maps canonical names to the file's."""
    mapping = _column_map(columns)
    path = Path(interactions)
    raw = read_table(path)
    hint = "map your column names with --column user_id=<yours> (or data.columns in the job)"
    require_columns(raw, [mapping["user_id"], mapping["item_id"]], path, hint)
    first_line = _first_line(path)
    frame = pd.DataFrame(
        {
            field: keep_ids(require_values(raw[mapping[field]], path, mapping[field], first_line))
            for field in ("user_id", "item_id")
        }
    )
    has_ratings = mapping["rating"] in raw.columns
    frame["rating"] = (
        parse_numeric(raw[mapping["rating"]], path, mapping["rating"], first_line).astype("float32")
        if has_ratings
        else np.float32("nan")
    )
    has_timestamps = mapping["timestamp"] in raw.columns
    frame["timestamp"] = (
        parse_timestamps(raw[mapping["timestamp"]], path, mapping["timestamp"], first_line)
        if has_timestamps
        else _NO_TIME
    )
    item_table = _read_items(Path(items), frame["item_id"]) if items else _bare_items(frame)
    user_table = _read_users(Path(users), frame["user_id"]) if users else _bare_users(frame)
    return Dataset(
        name or path.stem,
        frame,
        item_table,
        user_table,
        has_ratings=has_ratings,
        has_timestamps=has_timestamps,
        meta={"source": str(path)},
    )


def keep_ids(column: pd.Series) -> pd.Series:
    """Ids as the file gives them: int64 when every value is a plain integer, else str."""
    if pd.api.types.is_integer_dtype(column):
        return column.astype("int64")
    text = column.astype(str).str.strip()
    if text.str.fullmatch(_PLAIN_INT.pattern).all():
        return text.astype("int64")
    return text


def read_ids(path: Path, column: str) -> pd.Series:
    """One id column of a file (a list of users, say), every row given."""
    raw = read_table(path)
    require_columns(raw, [column], path)
    return _ids(raw, path, column)


def _ids(raw: pd.DataFrame, path: Path, column: str) -> pd.Series:
    return keep_ids(require_values(raw[column], path, column, _first_line(path)))


def _first_line(path: Path) -> int:
    """The file line of the first row: after the header in a CSV, row 1 in Parquet."""
    return 2 if path.suffix.lower() == ".csv" else 1


def _column_map(columns: Mapping[str, str] | None) -> dict[str, str]:
    mapping = {field: field for field in CANONICAL_FIELDS}
    for key, value in (columns or {}).items():
        if key not in CANONICAL_FIELDS:
            raise DataError(
                f"column mapping names {key!r}; map only {list(CANONICAL_FIELDS)} "
                "to your file's column names"
            )
        mapping[key] = value
    return mapping


def read_items(path: Path) -> pd.DataFrame:
    """An items file on its own, canonical: what serving re-reads to find new items."""
    return _read_items(Path(path), None)


def _read_items(path: Path, used_ids: pd.Series | None) -> pd.DataFrame:
    raw = read_table(path)
    require_columns(raw, ["item_id"], path)
    ids = _ids(raw, path, "item_id")
    if used_ids is None:
        used_ids = ids
    _check_id_kind(ids, used_ids, path, "item_id")
    items = empty_items(ids.tolist())
    if "title" in raw.columns:
        items["title"] = raw["title"].fillna("").astype(str).to_numpy()
    genre_column = next((c for c in ("genres", "categories") if c in raw.columns), None)
    if genre_column:
        column = raw[genre_column].fillna("")
        items["genres"] = [[g.strip() for g in str(v).split("|") if g.strip()] for v in column]
    if "text" in raw.columns:
        items["text"] = raw["text"].fillna("").astype(str).to_numpy()
    if "year" in raw.columns:
        first_line = _first_line(path)
        year = raw["year"].replace("", np.nan)
        present = year.notna()
        parsed = parse_numeric(year[present], path, "year", first_line).astype("int64")
        items.loc[present.to_numpy(), "year"] = parsed.to_numpy()
    missing = set(used_ids.unique()) - set(items["item_id"])
    if missing:
        items = pd.concat([items, empty_items(sorted(missing, key=str))], ignore_index=True)
    return items


def _read_users(path: Path, used_ids: pd.Series) -> pd.DataFrame:
    raw = read_table(path)
    require_columns(raw, ["user_id"], path)
    users = raw.copy()
    users["user_id"] = _ids(raw, path, "user_id")
    _check_id_kind(users["user_id"], used_ids, path, "user_id")
    for column in users.columns.drop("user_id"):
        numeric = pd.to_numeric(users[column], errors="coerce")
        if numeric.notna().all():
            users[column] = numeric
    return users


def _bare_items(frame: pd.DataFrame) -> pd.DataFrame:
    return empty_items(pd.unique(frame["item_id"]).tolist())


def _bare_users(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.unique(frame["user_id"])})


def _check_id_kind(ids: pd.Series, used: pd.Series, path: Path, column: str) -> None:
    if pd.api.types.is_integer_dtype(ids) != pd.api.types.is_integer_dtype(used):
        raise DataError(
            f"{path}: column {column!r} holds {'integer' if ids.dtype.kind == 'i' else 'text'} "
            "ids but the interactions file holds the other kind; the same id must be spelt "
            "the same way in every file"
        )
