"""Compaction of the feedback sink: each closed day becomes one file.

The sink (:mod:`kuberec.serving.feedback_sink`) writes one small file per flush, so a
day holds thousands of them and every reader (training, the operator's data watcher)
pays one open per file. ``kuberec data compact-feedback SINK`` rewrites each day before
today (UTC) as one ``compacted-<ms>-<id>.parquet`` whose footer names the files it
replaces, in three steps that keep every row readable exactly once
(:func:`~kuberec.components.datasets.feedback.live_files` is the reader's rule):

1. write the day's rows (its files in name order) under a dot name: readers skip it;
2. rename it into place: from then on readers drop the files it names, so no row is
   doubled (one rename, one file: atomic on a local disk, one object on a bucket);
3. delete the files it names; an interruption before this step only leaves them to
   the next run, which deletes them (they stay covered until then).

Today's partition is left alone (pods still flush into it). A late flush into a past
day (a pod's backlog after a sink outage) adds a file the compacted one does not name:
it is read beside it and folded in by the next run. One compaction at a time per sink
(a CronJob, or by hand): two concurrent runs over one day would each cover its files.
Training (:func:`~kuberec.components.datasets.feedback.with_feedback`) and the operator's
data watcher see the same rows before and after, so compaction is not new data.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kuberec.components.datasets.feedback import (
    COMPACTED_PREFIX,
    COVERS_KEY,
    PARTITION,
    SCHEMA,
    covers,
    live_files,
)


@dataclass
class Compaction:
    """What one run did: per compacted day, the files it replaced and the rows they held."""

    days: dict[str, int] = field(default_factory=dict)  # day -> files replaced
    rows: dict[str, int] = field(default_factory=dict)  # day -> rows in its one file
    removed: int = 0  # files deleted (this run's and leftovers of an interrupted run)


def compact_sink(uri: str, *, today: date | None = None) -> Compaction:
    """Compact every day partition before ``today`` (UTC) that holds more than one file."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    today = today or datetime.now(UTC).date()
    result = Compaction()
    by_day: dict[str, list[str]] = {}
    for path, _ in live_files(fs, root):
        folder = PurePosixPath(path).parent.name
        if folder.startswith(f"{PARTITION}="):
            by_day.setdefault(folder[len(PARTITION) + 1 :], []).append(path)
    for day, files in sorted(by_day.items()):
        if day >= today.isoformat():
            continue
        if len(files) > 1:
            files = [_compact_day(fs, files, day, result)]
        result.removed += _remove_covered(fs, files)
    return result


def _compact_day(fs: Any, files: list[str], day: str, result: Compaction) -> str:
    """Steps 1 and 2 for one day; the path of its new compacted file."""
    folder = str(PurePosixPath(files[0]).parent)
    names: set[str] = set()
    tables = []
    for path in files:  # live_files' order: the rows come out as before
        name = PurePosixPath(path).name
        names.add(name)
        if name.startswith(COMPACTED_PREFIX):
            names.update(covers(fs, path))  # its leftovers stay covered by the new file
        with fs.open(path, "rb") as handle:
            tables.append(pq.read_table(handle, schema=SCHEMA))
    covered = json.dumps(sorted(names)).encode()
    table = pa.concat_tables(tables).replace_schema_metadata({COVERS_KEY: covered})
    data = io.BytesIO()
    pq.write_table(table, data)
    name = f"{COMPACTED_PREFIX}{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
    hidden = f"{folder}/.{name}"
    with fs.open(hidden, "wb") as out:  # step 1: invisible to readers
        out.write(data.getvalue())
    fs.mv(hidden, f"{folder}/{name}")  # step 2: the covered files drop out of every read
    result.days[day] = len(files)
    result.rows[day] = table.num_rows
    return f"{folder}/{name}"


def _remove_covered(fs: Any, files: list[str]) -> int:
    """Step 3: delete what the day's compacted file covers; plain parts before compacted ones,
    so an interruption here never uncovers a file."""
    folder = str(PurePosixPath(files[0]).parent)
    covered: set[str] = set()
    for path in files:
        if PurePosixPath(path).name.startswith(COMPACTED_PREFIX):
            covered |= set(covers(fs, path))
    existing = [f"{folder}/{n}" for n in covered if fs.exists(f"{folder}/{n}")]
    ordered = sorted(existing, key=lambda p: PurePosixPath(p).name.startswith(COMPACTED_PREFIX))
    for path in ordered:
        fs.rm(path)
    return len(ordered)
