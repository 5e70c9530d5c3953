"""The durable side of feedback: a Parquet dataset partitioned by day, in any fsspec location.

Events are buffered and written as one file per flush
(``<sink>/date=YYYY-MM-DD/part-<ms>-<id>.parquet``, written under a dot name
and renamed, so a reader never sees half a file; Parquet readers skip dot
files). A sink that cannot be written (disk full, bucket gone) keeps the events
for the next try up to :data:`MAX_BACKLOG`, counts each failure and logs one
line per :data:`LOG_INTERVAL_S`; it never raises to its caller, so serving
keeps answering. Training reads the same folder
(:mod:`kuberec.components.datasets.feedback`).
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from kuberec.components.datasets.feedback import PARTITION, SCHEMA
from kuberec.serving import feedback_metrics

log = logging.getLogger(__name__)

MAX_BACKLOG = 100_000
LOG_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Event:
    """One feedback event as stored: ids as text, like Feast's join keys."""

    request_id: str
    user_id: str
    item_id: str
    event: str
    model_version: str
    timestamp: datetime  # UTC
    request_known: bool = True
    accepted_at: float = 0.0  # time.perf_counter() when /feedback accepted it (not stored)


class ParquetSink:
    """Buffers events and writes them as day partitions; safe to call from one thread."""

    def __init__(
        self,
        uri: str,
        *,
        flush_s: float = 5.0,
        flush_events: int = 5000,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        import fsspec

        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.flush_s = flush_s
        self.flush_events = flush_events
        self.max_backlog = max_backlog
        self._buffer: list[Event] = []
        self._oldest = 0.0
        self._last_log = -LOG_INTERVAL_S

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    def add(self, events: Sequence[Event]) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.extend(events)
        over = len(self._buffer) - self.max_backlog
        if over > 0:  # the sink has been failing for a while: keep the newest
            del self._buffer[:over]
            feedback_metrics.drop("sink_backlog", over)
        feedback_metrics.metrics()["backlog"].set(len(self._buffer))

    def due(self) -> bool:
        return bool(self._buffer) and (
            len(self._buffer) >= self.flush_events
            or time.monotonic() - self._oldest >= self.flush_s
        )

    def seconds_to_due(self) -> float:
        if not self._buffer:
            return self.flush_s
        return max(0.0, self.flush_s - (time.monotonic() - self._oldest))

    def flush(self) -> bool:
        """Write what is buffered; False (events kept) when the sink cannot be written."""
        if not self._buffer:
            return True
        events = self._buffer
        try:
            for day, rows in _by_day(events).items():
                self._write(day, rows)
        except Exception as exc:  # any storage failure: keep serving, retry next flush
            feedback_metrics.metrics()["sink_errors"].inc()
            now = time.monotonic()
            if now - self._last_log >= LOG_INTERVAL_S:
                self._last_log = now
                log.warning(
                    "feedback sink %s cannot be written (%s: %s); %d events held, retrying",
                    self.uri,
                    type(exc).__name__,
                    exc,
                    len(events),
                )
            self._oldest = time.monotonic()  # next try after another interval
            return False
        self._buffer = []
        feedback_metrics.metrics()["stored"].inc(len(events))
        feedback_metrics.metrics()["backlog"].set(0)
        return True

    def _write(self, day: str, rows: list[Event]) -> None:
        folder = f"{self.root.rstrip('/')}/{PARTITION}={day}"
        name = f"part-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_pylist(
            [{f: getattr(r, f) for f in SCHEMA.names} for r in rows], schema=SCHEMA
        )
        data = io.BytesIO()
        pq.write_table(table, data)
        self.fs.makedirs(folder, exist_ok=True)
        hidden = f"{folder}/.{name}"
        with self.fs.open(hidden, "wb") as out:
            out.write(data.getvalue())
        self.fs.mv(hidden, f"{folder}/{name}")


def _by_day(events: Sequence[Event]) -> dict[str, list[Event]]:
    days: dict[str, list[Event]] = {}
    for event in events:
        days.setdefault(event.timestamp.strftime("%Y-%m-%d"), []).append(event)
    return days
