"""Cheap data observation for the cluster: a fingerprint of the interactions file, not a digest.

The local platform loads the dataset to digest it; an operator watching
hundreds of jobs cannot load ml-25m every few seconds. Here:

* MovieLens releases and synthetic data are fixed by the spec (a new release or
  seed is a spec change, which retrains): nothing is observed (``None``).
* ``interactions.uri``: the object store's metadata (size, mtime/ETag of the
  file, or of every file in a folder) is the fingerprint, read at most once per
  ``data_poll_s``. The fingerprint the latest model was launched with is kept
  in the job's annotation ``kuberec.io/trained-data``; while it is unchanged
  the observation *is* the model's lineage (no retrain), and once it moves the
  observation is the new fingerprint with the row count Parquet footers give
  (other formats: any change counts as enough new data).
* ``spec.data.feedback.include`` with a ``feedback.sink`` URI (the one the
  serving pods write): the sink is watched too, whatever the base source. Its
  part of the fingerprint is ``sink:<events>:<digest of the rows per day>``
  where ``<events>`` counts the stored events of the listed types (the
  ``event`` column of each file a reader takes, read once per file name and
  size). Compacting a day (:mod:`kuberec.components.datasets.feedback_compaction`)
  changes its files but neither count, so it is not new data.
  New interactions are the sink's events since the fingerprint the model was
  launched with (a MovieLens or synthetic base is fixed by the spec), plus the
  base file's Parquet rows when it has them. Synthetic traffic is never stored
  (:mod:`kuberec.serving.feedback_loop`), so it cannot move this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.components.datasets.feedback import live_files
from kuberec.operator.observations import DataObservation

TRAINED_DATA_ANNOTATION = "kuberec.io/trained-data"
SINK_PREFIX = "sink:"
log = logging.getLogger(__name__)
_STAMP_KEYS = ("size", "mtime", "ETag", "etag", "LastModified", "last_modified", "md5Hash",
               "generation", "created")  # fmt: skip


class DataWatcher:
    def __init__(self, poll_s: float = 60.0) -> None:
        self.poll_s = poll_s
        self._cache: dict[str, tuple[float, str, int | None]] = {}
        self._sink_cache: dict[str, tuple[float, str, int]] = {}
        self._file_events: dict[tuple[str, int, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def observe(self, job: RecommenderJob, status: JobStatus, trained: str | None
                ) -> DataObservation | None:  # fmt: skip
        """What reconcile compares with the latest model's lineage (see the module doc)."""
        source = job.spec.data.interactions
        sink = watched_sink(job)
        if source is None and sink is None:
            return None
        parts: list[str] = []
        rows: int | None = None
        if source is not None:
            base, rows = self.fingerprint(source.uri)
            parts.append(base)
        events = 0
        if sink is not None:
            digest, events = self.sink_fingerprint(sink, job.spec.data.feedback.events)
            parts.append(f"{SINK_PREFIX}{events}:{digest}")
        fingerprint = "+".join(parts)
        latest = status.challenger or status.champion
        if latest is not None and (trained is None or trained == fingerprint):
            return DataObservation(latest.lineage.dataset_digest, latest.lineage.interactions)
        before = _sink_events(trained)
        if rows is not None:
            rows += events
        elif source is None and latest is not None and before is not None:
            rows = latest.lineage.interactions + events - before
        if rows is None:
            minimum = job.spec.training.retrain_on.min_new_interactions or 1
            rows = (latest.lineage.interactions if latest else 0) + minimum
        return DataObservation(f"fp:{fingerprint}", rows)

    def sink_fingerprint(self, uri: str, events: Sequence[str]) -> tuple[str, int]:
        """``(digest of the sink's rows per day, stored events of those types)``,
        cached for ``poll_s``; each file's events are read once."""
        key = f"{uri}|{','.join(sorted(events))}"
        with self._lock:
            cached = self._sink_cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.poll_s:
                return cached[1], cached[2]
        import fsspec

        fs, root = fsspec.core.url_to_fs(uri)
        total = 0
        per_day: dict[str, int] = {}
        for path, size in live_files(fs, root):
            counted = self._file_events.get((path, size, key))
            if counted is None:
                counted = _count_events(fs, path, events)
                self._file_events[(path, size, key)] = counted
            total += counted[0]
            day = PurePosixPath(path).parent.name
            per_day[day] = per_day.get(day, 0) + counted[1]
        # rows per day, not file names: compacting a day changes its files, not its rows
        listed = sorted(per_day.items())
        digest = hashlib.sha256(repr(listed).encode()).hexdigest()[:16] if listed else "empty"
        with self._lock:
            self._sink_cache[key] = (time.monotonic(), digest, total)
        return digest, total

    def fingerprint(self, uri: str) -> tuple[str, int | None]:
        """``(fingerprint, parquet rows or None)``, cached for ``poll_s``."""
        with self._lock:
            cached = self._cache.get(uri)
            if cached is not None and time.monotonic() - cached[0] < self.poll_s:
                return cached[1], cached[2]
        fingerprint, rows = _read(uri)
        with self._lock:
            self._cache[uri] = (time.monotonic(), fingerprint, rows)
        return fingerprint, rows


def watched_sink(job: RecommenderJob) -> str | None:
    """The sink the job trains on, when it is a URI the operator can read (``s3://``,
    ``gs://``, ``file://``); a plain path is relative to pods the operator cannot see."""
    sink = job.spec.feedback.sink
    if not job.spec.data.feedback.include or not sink or "://" not in sink:
        return None
    return sink


def _sink_events(fingerprint: str | None) -> int | None:
    """The sink's event count in a fingerprint written by :meth:`DataWatcher.observe`."""
    for part in (fingerprint or "").split("+"):
        if part.startswith(SINK_PREFIX):
            count = part[len(SINK_PREFIX) :].split(":", 1)[0]
            return int(count) if count.isdigit() else None
    return None


def _count_events(fs: Any, path: str, events: Sequence[str]) -> tuple[int, int]:
    """``(events of the listed types, rows)`` in one sink file; ``(0, 0)`` when unreadable."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as handle:
            column = pq.read_table(handle, columns=["event"]).column("event")
    except (OSError, pa.ArrowException, KeyError) as exc:  # one bad file must not stop the pass
        log.warning("feedback sink file %s unreadable, counted as 0 events: %s", path, exc)
        return 0, 0
    wanted = pa.array(list(events), type=pa.string())
    return int(pc.sum(pc.is_in(column, value_set=wanted)).as_py() or 0), len(column)


def _read(uri: str) -> tuple[str, int | None]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return "missing", None
    entries = [info]
    if info.get("type") == "directory":
        entries = sorted(fs.ls(path, detail=True), key=lambda e: str(e.get("name")))
    stamps = [{k: str(e.get(k)) for k in ("name", *_STAMP_KEYS) if k in e} for e in entries]
    digest = hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest()[:16]
    return digest, _parquet_rows(fs, [e for e in entries if e.get("type") != "directory"])


def _parquet_rows(fs: Any, entries: list[dict[str, Any]]) -> int | None:
    names = [str(e["name"]) for e in entries]
    if not names or not all(n.endswith(".parquet") for n in names):
        return None
    import pyarrow.parquet as pq

    total = 0
    for name in names:
        with fs.open(name, "rb") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows  # the footer only
    return total
