"""Turn a canonical dataset into the Parquet sources of the Feast repo.

Every row is stamped with the time its values became known, and holds only
what was known then: a user-profile row at time T summarises the user's
interactions with timestamp <= T; an item-profile row likewise. Training
frames ask for features one second before each label (see ``operations``),
so a label never sees itself or anything later. Attributes without a time
(user attributes, titles, text) get a row one second before the first
interaction: they are known from the start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kuberec.components.datasets.atomic import atomic_path
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.features.embeddings import embed_items
from kuberec.feature_repo.definitions import SCHEMA_FILE, SOURCE_FILES

RECENT_ITEMS = 10
RESERVED_USER_COLUMNS = {"interaction_count", "mean_rating", "recent_items"}
LIST_TYPES = {
    "recent_items": pa.list_(pa.string()),
    "genres": pa.list_(pa.string()),
    "embedding": pa.list_(pa.float32()),
}


@dataclass(frozen=True)
class IngestResult:
    sources_dir: Path
    rows: dict[str, int]
    user_attributes: dict[str, str]


def ingest(
    dataset: Dataset,
    sources_dir: Path,
    *,
    recent_days: int = 30,
    text_embeddings: bool = True,
) -> IngestResult:
    """Write the sources (atomically, as one folder) and the schema the repo is built from."""
    origin = dataset.interactions["timestamp"].min() - pd.Timedelta(seconds=1)
    users, attributes = user_profile(dataset, origin)
    items = item_profile(dataset, origin, recent_days=recent_days)
    frames = {"user_profile": users, "item_profile": items}
    if text_embeddings:
        frames["item_text_embedding"] = item_text_frame(dataset, origin)
    with atomic_path(Path(sources_dir)) as tmp:
        tmp.mkdir(parents=True)
        for view, frame in frames.items():
            _write_source(frame, tmp / SOURCE_FILES[view])
        schema = {
            "dataset": dataset.name,
            "user_attributes": attributes,
            "text_embeddings": text_embeddings,
            "origin": origin.isoformat(),
            "watermark": dataset.interactions["timestamp"].max().isoformat(),
        }
        (tmp / SCHEMA_FILE).write_text(json.dumps(schema, indent=2))
    return IngestResult(Path(sources_dir), {k: len(v) for k, v in frames.items()}, attributes)


def user_profile(dataset: Dataset, origin: pd.Timestamp) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per (user, distinct timestamp) with the history up to and including it."""
    inter = dataset.interactions.sort_values(["user_id", "timestamp"], kind="stable")
    user = inter["user_id"].to_numpy()
    count, mean = _running_stats(user, inter["rating"].to_numpy(dtype=np.float64))
    recent = _recent_items(user, inter["item_id"].astype(str).to_numpy(), RECENT_ITEMS)
    history = pd.DataFrame(
        {
            "user_id": inter["user_id"].astype(str).to_numpy(),
            "event_timestamp": inter["timestamp"].array,
            "interaction_count": count,
            "mean_rating": mean.astype(np.float32),
            "recent_items": recent,
        }
    )
    history = history.drop_duplicates(["user_id", "event_timestamp"], keep="last")
    known = pd.DataFrame({"user_id": dataset.users["user_id"].astype(str)})
    everyone = pd.concat([known["user_id"], history["user_id"]]).drop_duplicates()
    start = pd.DataFrame(
        {
            "user_id": everyone.to_numpy(),
            "event_timestamp": origin,
            "interaction_count": np.int64(0),
            "mean_rating": np.float32("nan"),
            "recent_items": _empty_lists(len(everyone)),
        }
    )
    rows = pd.concat([start, history], ignore_index=True)
    attributes, kinds = _user_attributes(dataset.users)
    rows = rows.merge(attributes, on="user_id", how="left")
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    return rows, kinds


def item_profile(dataset: Dataset, origin: pd.Timestamp, *, recent_days: int) -> pd.DataFrame:
    """One row per (item, distinct timestamp): popularity overall and in the trailing window."""
    inter = dataset.interactions.sort_values(["item_id", "timestamp"], kind="stable")
    item = inter["item_id"].to_numpy()
    ts = inter["timestamp"].astype("int64").to_numpy()
    count, mean = _running_stats(item, inter["rating"].to_numpy(dtype=np.float64))
    recent = _trailing_count(item, ts, recent_days * 86_400 * 10**9)
    history = pd.DataFrame(
        {
            "item_id": inter["item_id"].astype(str).to_numpy(),
            "event_timestamp": inter["timestamp"].array,
            "popularity": count,
            "popularity_recent": recent,
            "mean_rating": mean.astype(np.float32),
        }
    ).drop_duplicates(["item_id", "event_timestamp"], keep="last")
    catalogue = dataset.items.assign(item_id=dataset.items["item_id"].astype(str))
    everyone = pd.concat([catalogue["item_id"], history["item_id"]]).drop_duplicates()
    start = pd.DataFrame(
        {
            "item_id": everyone.to_numpy(),
            "event_timestamp": origin,
            "popularity": np.int64(0),
            "popularity_recent": np.int64(0),
            "mean_rating": np.float32("nan"),
        }
    )
    rows = pd.concat([start, history], ignore_index=True)
    static = catalogue[["item_id", "genres", "year", "title"]].drop_duplicates("item_id")
    rows = rows.merge(static, on="item_id", how="left")
    rows["genres"] = [g if isinstance(g, list | np.ndarray) else [] for g in rows["genres"]]
    rows["title"] = rows["title"].fillna("")
    rows["year"] = rows["year"].astype("Int64")
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    return rows


def item_text_frame(dataset: Dataset, origin: pd.Timestamp) -> pd.DataFrame:
    items = dataset.items.drop_duplicates("item_id")
    vectors = embed_items(items)
    return pd.DataFrame(
        {
            "item_id": items["item_id"].astype(str).to_numpy(),
            "event_timestamp": pd.Series([origin] * len(items)).to_numpy(),
            "embedding": list(vectors),
        }
    ).assign(event_timestamp=lambda f: pd.to_datetime(f["event_timestamp"], utc=True))


def _write_source(frame: pd.DataFrame, path: Path) -> None:
    """Parquet with list columns typed explicitly: an all-empty list column must still be a
    list of strings, the type Feast registered, not Arrow's list<null>."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, kind in LIST_TYPES.items():
        if name in table.column_names:
            position = table.column_names.index(name)
            table = table.set_column(position, name, table[name].cast(kind))
    # pandas metadata would name Arrow-backed dtypes that pandas cannot read back; the
    # Arrow schema alone says everything (types, time zones).
    pq.write_table(table.replace_schema_metadata(None), path)


def _running_stats(keys: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative count and mean rating within runs of equal (sorted) keys; NaN ratings skipped."""
    starts = _run_starts(keys)
    idx = np.arange(len(keys))
    first = np.maximum.accumulate(np.where(starts, idx, 0))
    count = idx - first + 1
    rated = ~np.isnan(ratings)
    total = np.cumsum(np.where(rated, ratings, 0.0))
    n_rated = np.cumsum(rated)
    before_total = np.where(first > 0, total[first - 1], 0.0)
    before_n = np.where(first > 0, n_rated[first - 1], 0)
    n = n_rated - before_n
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, (total - before_total) / np.maximum(n, 1), np.nan)
    return count.astype(np.int64), mean


def _trailing_count(keys: np.ndarray, ts: np.ndarray, window: int) -> np.ndarray:
    """Per row, how many rows of the same key fall in (ts - window, ts]."""
    starts = _run_starts(keys)
    idx = np.arange(len(keys))
    first = np.maximum.accumulate(np.where(starts, idx, 0))
    # Offset timestamps per key so one global searchsorted stays within the key's run.
    group = np.cumsum(starts) - 1
    span = (ts.max() - ts.min()) + 2 * window + 1
    shifted = ts - ts.min() + group.astype(np.int64) * span
    low = np.searchsorted(shifted, shifted - window, side="right")
    low = np.maximum(low, first)
    return (idx - low + 1).astype(np.int64)


def _recent_items(keys: np.ndarray, items: np.ndarray, n: int) -> pd.arrays.ArrowExtensionArray:
    """Per row, the last ``n`` items of its key up to and including it, newest first.

    Built as one Arrow list array from offsets: a Python list per row costs
    seconds at a million rows.
    """
    starts = _run_starts(keys)
    idx = np.arange(len(keys))
    first = np.maximum.accumulate(np.where(starts, idx, 0))
    lows = np.maximum(first, idx - n + 1)
    lengths = idx - lows + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    flat = np.repeat(idx, lengths) - within
    values = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(items[flat]))
    return pd.arrays.ArrowExtensionArray(values)


def _empty_lists(n: int) -> pd.arrays.ArrowExtensionArray:
    offsets = pa.array(np.zeros(n + 1, dtype=np.int32))
    return pd.arrays.ArrowExtensionArray(
        pa.ListArray.from_arrays(offsets, pa.array([], pa.string()))
    )


def _run_starts(keys: np.ndarray) -> np.ndarray:
    starts = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        starts[1:] = keys[1:] != keys[:-1]
    return starts


def _user_attributes(users: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Attribute columns with Feast kinds; names clashing with profile fields get ``attr_``."""
    frame = pd.DataFrame({"user_id": users["user_id"].astype(str)})
    kinds: dict[str, str] = {}
    for column in users.columns.drop("user_id"):
        name = f"attr_{column}" if column in RESERVED_USER_COLUMNS else str(column)
        values = users[column]
        if pd.api.types.is_integer_dtype(values):
            frame[name], kinds[name] = values.astype("Int64"), "int"
        elif pd.api.types.is_float_dtype(values):
            frame[name], kinds[name] = values.astype("float64"), "float"
        else:
            frame[name], kinds[name] = values.astype(str), "str"
    return frame.drop_duplicates("user_id"), kinds
