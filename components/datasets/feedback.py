"""Feedback becomes training data: the sink's events join the job's interactions.

This is the one place that decides which feedback a job trains on, so what the
pipeline trains on, the data digest the operator compares and the count
``training.retrainOn.minNewInteractions`` is measured against all agree: with
``spec.data.feedback.include``, every event of ``spec.feedback.sink`` whose
type is in ``events`` becomes an interaction at its own time, rated
``weight``. An event repeated with the same request id counts once (a client
retry); events whose ids cannot be the data's ids (text for integer ids), or
whose item is not in the catalogue, are left out and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from kuberec.api.spec import JobSpec
from kuberec.components.datasets.canonical import Dataset

#: The sink's rows: serving/feedback_sink.py writes them, training reads them here.
SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("user_id", pa.string()),
    ("item_id", pa.string()),
    ("event", pa.string()),
    ("model_version", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("request_known", pa.bool_()),
])  # fmt: skip
PARTITION = "date"
#: A compacted day (:mod:`kuberec.components.datasets.feedback_compaction`) is one file named
#: so, whose footer lists the files it replaces; those are dropped by :func:`live_files`.
COMPACTED_PREFIX = "compacted-"
COVERS_KEY = b"kuberec.covers"
#: The events that are interactions (they move features); impressions are only stored.
INTERACTIONS = frozenset({"click", "purchase"})

log = logging.getLogger(__name__)


def sink_uri(spec: JobSpec, base: Path = Path()) -> str | None:
    """The sink as an fsspec URI; a relative path is relative to the job's folder."""
    sink = spec.feedback.sink
    if not sink:
        return None
    if "://" in sink:
        return sink
    path = Path(sink)
    return str(path if path.is_absolute() else Path(base) / path)


def live_files(fs: Any, root: str) -> list[tuple[str, int]]:
    """``(path, size)`` of the sink's Parquet files a reader takes, sorted (day, then name).

    Skipped: anything under a dot name (written, then renamed into place), and the files
    a compacted day's file covers, so a day compacted but not yet cleaned up (a compaction
    interrupted after its rename) is still read once.
    """
    if not fs.exists(root):
        return []
    prefix = root.rstrip("/") + "/"
    found = {
        str(p): int(i.get("size") or 0)
        for p, i in fs.find(root, detail=True).items()
        if str(p).endswith(".parquet")
        and not any(part.startswith(".") for part in str(p)[len(prefix) :].split("/"))
    }
    covered: set[str] = set()
    for path in found:
        if PurePosixPath(path).name.startswith(COMPACTED_PREFIX):
            folder = str(PurePosixPath(path).parent)
            covered |= {f"{folder}/{name}" for name in covers(fs, path)}
    return sorted((p, size) for p, size in found.items() if p not in covered)


def covers(fs: Any, path: str) -> list[str]:
    """The file names (in the same day folder) that a compacted file replaces."""
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        metadata = pq.read_metadata(handle).metadata or {}
    return json.loads(metadata.get(COVERS_KEY, b"[]"))


def read_sink(uri: str) -> pd.DataFrame:
    """Every stored event (no rows when the sink does not exist yet)."""
    import fsspec
    import pyarrow.dataset as ds

    fs, root = fsspec.core.url_to_fs(uri)
    files = [path for path, _ in live_files(fs, root)]
    if not files:
        return SCHEMA.empty_table().to_pandas()
    dataset = ds.dataset(
        files, filesystem=fs, format="parquet", schema=SCHEMA, exclude_invalid_files=True
    )
    table = dataset.to_table(columns=SCHEMA.names)
    return table.to_pandas()


def fingerprint(uri: str | None) -> str:
    """Cheap: the names and sizes of the files a reader takes (:func:`live_files`)."""
    if uri is None:
        return ""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(root):
        return "empty"
    files = live_files(fs, root)
    digest = hashlib.sha256(repr(files).encode()).hexdigest()[:12]
    return f"{len(files)}:{sum(s for _, s in files)}:{digest}"


def with_feedback(dataset: Dataset, spec: JobSpec, base: Path = Path()) -> Dataset:
    """``dataset`` plus the feedback the job asks to train on (unchanged without it)."""
    wanted = spec.data.feedback
    uri = sink_uri(spec, base)
    if not wanted.include or uri is None:
        return dataset
    events = read_sink(uri)
    events = events[events["event"].isin(wanted.events)]
    events = events.drop_duplicates(["request_id", "user_id", "item_id", "event"])
    rows = pd.DataFrame({
        "user_id": _as_ids(events["user_id"], dataset.interactions["user_id"]),
        "item_id": _as_ids(events["item_id"], dataset.interactions["item_id"]),
        "rating": np.float32(wanted.weight),
        "timestamp": pd.to_datetime(events["timestamp"], utc=True).astype("datetime64[ns, UTC]"),
    })  # fmt: skip
    usable = rows["user_id"].notna() & rows["item_id"].notna()
    usable &= rows["item_id"].isin(dataset.items["item_id"])
    if (~usable).any():
        log.warning(
            "%s: %d feedback events left out (ids not of the data's kind, or items "
            "not in the catalogue)",
            uri,
            int((~usable).sum()),
        )
    rows = rows[usable].astype({c: dataset.interactions[c].dtype for c in ("user_id", "item_id")})
    if rows.empty:
        return dataset
    combined = pd.concat(
        [dataset.interactions, rows.astype({"rating": "float32"})], ignore_index=True
    )
    known = set(dataset.users["user_id"])
    newcomers = pd.DataFrame({"user_id": [u for u in rows["user_id"].unique() if u not in known]})
    users = (
        pd.concat([dataset.users, newcomers], ignore_index=True)
        if len(newcomers)
        else (dataset.users)
    )
    meta = {**dataset.meta, "feedback_events": str(len(rows))}
    return Dataset(
        dataset.name,
        combined,
        dataset.items,
        users,
        has_ratings=dataset.has_ratings,
        has_timestamps=dataset.has_timestamps,
        meta=meta,
    )


def _as_ids(values: pd.Series, like: pd.Series) -> pd.Series:
    """Ids stored as text, in the dtype of the data's ids (None where they cannot be)."""
    if pd.api.types.is_integer_dtype(like):
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.notna() & (numbers == numbers.round())
        return numbers.where(whole).astype("Int64").astype(object).where(whole, None)
    return values.astype(str)
