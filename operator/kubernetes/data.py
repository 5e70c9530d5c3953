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
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.operator.observations import DataObservation

TRAINED_DATA_ANNOTATION = "kuberec.io/trained-data"
_STAMP_KEYS = ("size", "mtime", "ETag", "etag", "LastModified", "last_modified", "md5Hash",
               "generation", "created")  # fmt: skip


class DataWatcher:
    def __init__(self, poll_s: float = 60.0) -> None:
        self.poll_s = poll_s
        self._cache: dict[str, tuple[float, str, int | None]] = {}
        self._lock = threading.Lock()

    def observe(self, job: RecommenderJob, status: JobStatus, trained: str | None
                ) -> DataObservation | None:  # fmt: skip
        """What reconcile compares with the latest model's lineage (see the module doc)."""
        source = job.spec.data.interactions
        if source is None:
            return None
        fingerprint, rows = self.fingerprint(source.uri)
        latest = status.challenger or status.champion
        if latest is not None and (trained is None or trained == fingerprint):
            return DataObservation(latest.lineage.dataset_digest, latest.lineage.interactions)
        if rows is None:
            minimum = job.spec.training.retrain_on.min_new_interactions or 1
            rows = (latest.lineage.interactions if latest else 0) + minimum
        return DataObservation(f"fp:{fingerprint}", rows)

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
