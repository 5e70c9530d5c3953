"""The GroupLens MovieLens releases, read from their official file formats.

A release is read from ``<data_dir>/<release>/`` when a data directory is given
(``--data-dir`` or ``$KUBEREC_DATA_DIR``), with no network access at all;
otherwise the official archive is downloaded once into the cache, verified and
unpacked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.api.names import MOVIELENS_RELEASES, check_registry
from kuberec.components.datasets.canonical import Dataset, empty_items
from kuberec.components.datasets.download import DATA_DIR_ENV, cache_dir, fetch_archive
from kuberec.components.datasets.parsing import (
    parse_numeric,
    parse_timestamps,
    read_table,
    require_columns,
)
from kuberec.errors import DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Release:
    """One MovieLens release: where it comes from and how to read it."""

    name: str
    md5: str | None  # None: use the checksum GroupLens publishes beside the archive
    marker: str  # a file every copy of the release has
    reader: Callable[[Path], Dataset]

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.name}.zip"


def load_movielens(name: str, data_dir: Path | None = None) -> Dataset:
    """The release ``name`` in canonical form, from ``data_dir`` or the download cache."""
    release = RELEASES.get(name)
    if release is None:
        raise DataError(f"unknown MovieLens release {name!r}; choose one of {sorted(RELEASES)}")
    return release.reader(release_dir(release, data_dir))


def release_dir(release: Release, data_dir: Path | None = None) -> Path:
    """The folder holding the release's files, downloading it only when no local copy is named."""
    local = data_dir or (Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else None)
    if local is not None:
        folder = Path(local) / release.name
        if not (folder / release.marker).exists():
            raise DataError(
                f"{folder / release.marker} not found: the data directory {local} should hold "
                f"{release.name}/ with the release's files (unpack {release.url} there), "
                f"or unset {DATA_DIR_ENV} and drop --data-dir to download it"
            )
        return folder
    folder = cache_dir() / release.name
    if not (folder / release.marker).exists():
        fetch_archive(release.url, release.md5, folder)
    return folder


def read_ml100k(folder: Path) -> Dataset:
    """``u.data`` (tab-separated), ``u.item`` (``|``, Latin-1, 19 genre flags), ``u.user``."""
    data_path = folder / "u.data"
    raw = read_table(data_path, sep="\t", header=None, names=["u", "i", "r", "t"])
    interactions = _interactions(raw, data_path, first_line=1)

    item_path = folder / "u.item"
    columns = ["item_id", "title", "release", "video", "url", *ML100K_GENRES]
    items_raw = read_table(item_path, sep="|", header=None, names=columns, encoding="latin-1")
    flags = items_raw[list(ML100K_GENRES)].to_numpy() == "1"
    genres = [[g for g, on in zip(ML100K_GENRES, row, strict=True) if on] for row in flags]
    items = _items(
        parse_numeric(items_raw["item_id"], item_path, "movie id", 1).astype("int64"),
        items_raw["title"],
        genres,
        text=None,
    )

    user_path = folder / "u.user"
    users_raw = read_table(
        user_path, sep="|", header=None, names=["user_id", "age", "gender", "occupation", "zip"]
    )
    users = pd.DataFrame(
        {
            "user_id": parse_numeric(users_raw["user_id"], user_path, "user id", 1).astype("int64"),
            "age": parse_numeric(users_raw["age"], user_path, "age", 1).astype("int64"),
            "gender": users_raw["gender"].astype(str),
            "occupation": users_raw["occupation"].astype(str),
            "zip_code": users_raw["zip"].astype(str),
        }
    )
    return Dataset("ml-100k", interactions, items, users, meta={"source": str(folder)})


def read_ml1m(folder: Path) -> Dataset:
    """``ratings.dat``, ``movies.dat`` and ``users.dat``, ``::``-separated, Latin-1."""
    options = {"sep": "::", "engine": "python", "header": None, "encoding": "latin-1"}
    data_path = folder / "ratings.dat"
    raw = read_table(data_path, names=["u", "i", "r", "t"], **options)
    interactions = _interactions(raw, data_path, first_line=1)

    movie_path = folder / "movies.dat"
    movies = read_table(movie_path, names=["item_id", "title", "genres"], **options)
    items = _items(
        parse_numeric(movies["item_id"], movie_path, "MovieID", 1).astype("int64"),
        movies["title"],
        _split_genres(movies["genres"]),
        text=None,
    )

    user_path = folder / "users.dat"
    users_raw = read_table(
        user_path, names=["user_id", "gender", "age", "occupation", "zip_code"], **options
    )
    users = pd.DataFrame(
        {
            "user_id": parse_numeric(users_raw["user_id"], user_path, "UserID", 1).astype("int64"),
            "gender": users_raw["gender"].astype(str),
            "age": parse_numeric(users_raw["age"], user_path, "Age", 1).astype("int64"),
            "occupation": users_raw["occupation"].astype(str),
            "zip_code": users_raw["zip_code"].astype(str),
        }
    )
    return Dataset("ml-1m", interactions, items, users, meta={"source": str(folder)})


def read_csv_release(folder: Path) -> Dataset:
    """The CSV releases (ml-latest-small, ml-25m, ml-32m): ratings, movies and tags."""
    data_path = folder / "ratings.csv"
    raw = read_table(data_path)
    require_columns(raw, ["userId", "movieId", "rating", "timestamp"], data_path)
    raw = raw[["userId", "movieId", "rating", "timestamp"]]
    raw.columns = ["u", "i", "r", "t"]
    interactions = _interactions(raw, data_path, first_line=2)

    movie_path = folder / "movies.csv"
    movies = read_table(movie_path)
    require_columns(movies, ["movieId", "title", "genres"], movie_path)
    tags_text: pd.Series | None = None
    tag_path = folder / "tags.csv"
    if tag_path.exists():
        tags = read_table(tag_path)
        require_columns(tags, ["movieId", "tag"], tag_path)
        tags_text = tags.groupby("movieId")["tag"].agg(lambda t: ", ".join(dict.fromkeys(t)))
    item_ids = parse_numeric(movies["movieId"], movie_path, "movieId", 2).astype("int64")
    text = None
    if tags_text is not None:
        text = movies["movieId"].map(tags_text).fillna("").to_numpy()
    items = _items(item_ids, movies["title"], _split_genres(movies["genres"]), text=text)
    users = pd.DataFrame({"user_id": np.sort(interactions["user_id"].unique())})
    return Dataset(folder.name, interactions, items, users, meta={"source": str(folder)})


def _interactions(raw: pd.DataFrame, path: Path, first_line: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "user_id": parse_numeric(raw["u"], path, "user id", first_line).astype("int64"),
            "item_id": parse_numeric(raw["i"], path, "item id", first_line).astype("int64"),
            "rating": parse_numeric(raw["r"], path, "rating", first_line).astype("float32"),
            "timestamp": parse_timestamps(raw["t"], path, "timestamp", first_line),
        }
    )
    return frame


def _items(
    item_ids: pd.Series, titles: pd.Series, genres: list[list[str]], text: np.ndarray | None
) -> pd.DataFrame:
    items = empty_items(item_ids.tolist())
    items["title"] = titles.astype(str).str.strip().to_numpy()
    items["year"] = pd.array(
        [int(m.group(1)) if (m := _YEAR.search(t)) else pd.NA for t in items["title"]],
        dtype="Int64",
    )
    items["genres"] = genres
    if text is not None:
        items["text"] = text
    return items


def _split_genres(column: pd.Series) -> list[list[str]]:
    return [[g for g in str(v).split("|") if g and g != "(no genres listed)"] for v in column]


# Archive md5s as GroupLens publishes them (``<archive>.md5``); ml-latest-small is
# re-issued from time to time, so its published checksum is fetched instead.
_CSV = read_csv_release
RELEASES: dict[str, Release] = {
    "ml-100k": Release("ml-100k", "0e33842e24a9c977be4e0107933c0723", "u.data", read_ml100k),
    "ml-1m": Release("ml-1m", "c4d9eecfca2ab87c1945afe126590906", "ratings.dat", read_ml1m),
    "ml-latest-small": Release("ml-latest-small", None, "ratings.csv", _CSV),
    "ml-25m": Release("ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv", _CSV),
    "ml-32m": Release("ml-32m", "d472be332d4daa821edc399621853b57", "ratings.csv", _CSV),
}
check_registry(RELEASES, MOVIELENS_RELEASES, "MovieLens releases (movielens.RELEASES)")
