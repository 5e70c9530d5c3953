"""Feedback off the request path: the documented checks, a bounded queue and one pusher thread.

``/feedback`` calls :meth:`FeedbackLoop.accept`, which checks the event, puts
it on a bounded queue and returns: it never waits for a store. The thread
takes whatever has queued (a batch, when events arrive faster than one push
takes), pushes the interactions to the Feast online store
(:class:`~.feedback_push.OnlinePusher`) and hands every event to the Parquet
sink (:class:`~.feedback_sink.ParquetSink`). A full queue drops the event
and counts it (``kuberec_feedback_dropped_total{reason="queue_full"}``); a
store or sink that fails is counted and logged, and requests go on.

The rule for bad input (each reason counted in ``kuberec_feedback_flagged_total``):

* an item the serving model does not know is **refused** (422 on ``item_id``):
  nothing could be recommended from it and it would only grow the sink;
* a user the model does not know is **accepted**: a new user's first clicks
  are what turn their fallback into personal recommendations;
* a request id this process did not answer (another replica's, one from before
  a restart, or a made-up one) is **accepted** and stored with
  ``request_known: false``, so training can tell them apart.

Traffic marked synthetic (``X-Kuberec-Traffic: synthetic``, what the local
platform's canary analysis replay sends) is checked the same way and counted
(``kuberec_feedback_synthetic_total``), but neither pushed nor stored: it is a
measurement, and a job that trains on its feedback would otherwise retrain on
its own canary's clicks forever. ``kuberec replay`` without ``--synthetic`` is
traffic sent on purpose and counts like real users.

Configured from the environment the platforms set from ``spec.feedback``
(:mod:`.feedback_settings`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kuberec.components.datasets.feedback import INTERACTIONS
from kuberec.errors import ConfigError
from kuberec.serving import feedback_metrics
from kuberec.serving.batching import _read as read_number
from kuberec.serving.feast_repo import FEAST_REPO_ENV, feast_repo
from kuberec.serving.feedback_settings import (
    FLUSH_ENV,
    IMPRESSIONS_ENV,
    PUSH_ENV,
    QUEUE_ENV,
    SINK_ENV,
)
from kuberec.serving.feedback_sink import Event, ParquetSink

if TYPE_CHECKING:  # imported on the pusher thread: Feast stays out of the server's startup
    from kuberec.serving.feedback_push import OnlinePusher

log = logging.getLogger(__name__)

DEFAULT_QUEUE = 10_000
MAX_BATCH = 1000
REMEMBERED_REQUESTS = 100_000
LOG_INTERVAL_S = 60.0


class Rejected(ValueError):
    """Feedback refused by the rule above; ``field`` names what to fix."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class FeedbackLoop:
    def __init__(
        self,
        pusher: OnlinePusher | None,
        sink: ParquetSink | None,
        *,
        repo: Path | None = None,
        queue_size: int = DEFAULT_QUEUE,
        impressions: bool = False,
    ) -> None:
        """``repo``: the Feast repo to push to, opened on the pusher thread (not at startup)."""
        self.pusher = pusher
        self._repo = repo
        self.sink = sink
        self.impressions = impressions and sink is not None
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=queue_size)
        self._requests: OrderedDict[str, str] = OrderedDict()  # request id -> user id
        self._last_log = -LOG_INTERVAL_S
        self._thread = threading.Thread(target=self._run, name="kuberec-feedback", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls) -> FeedbackLoop | None:
        """None when there is nowhere to send feedback (no Feast repo to push to, no sink)."""
        push = os.environ.get(PUSH_ENV, "1").strip() != "0"
        repo = feast_repo() if push and os.environ.get(FEAST_REPO_ENV) else None
        uri = os.environ.get(SINK_ENV, "").strip()
        flush_s = read_number(FLUSH_ENV, 5.0, float)
        size = int(read_number(QUEUE_ENV, DEFAULT_QUEUE, int))
        if size < 1 or flush_s < 0:
            raise ConfigError(
                f"{QUEUE_ENV} must be >= 1 and {FLUSH_ENV} >= 0; got {size}, {flush_s}"
            )
        sink = ParquetSink(uri, flush_s=flush_s) if uri else None
        if repo is None and sink is None:
            return None
        return cls(
            None,
            sink,
            repo=repo,
            queue_size=size,
            impressions=os.environ.get(IMPRESSIONS_ENV, "") == "1",
        )

    # --- the request side (event loop thread) ------------------------------------------------

    def served(
        self,
        request_id: str,
        user_id: object,
        item_ids: Sequence[object],
        model_version: str,
        *,
        synthetic: bool = False,
    ) -> None:
        """Remember an answer (for the request-id check) and, if configured, its impressions."""
        self._requests[request_id] = str(user_id)
        if len(self._requests) > REMEMBERED_REQUESTS:
            self._requests.popitem(last=False)
        if self.impressions and not synthetic:
            now = datetime.now(UTC)
            for item in item_ids:
                self._put(
                    Event(request_id, str(user_id), str(item), "impression", model_version, now)
                )

    def accept(
        self,
        request_id: str,
        user_id: object,
        item_id: object,
        event: str,
        model_version: str,
        *,
        known_user: bool,
        known_item: bool,
        synthetic: bool = False,
    ) -> None:
        """Check and queue one event (a synthetic one is only counted); :class:`Rejected`
        says why it was refused."""
        if not known_item:
            feedback_metrics.flag("unknown_item", "rejected")
            raise Rejected(
                "item_id",
                f"unknown item {item_id!r}: the serving model "
                f"({model_version}) has no such item; send ids it recommended",
            )
        if not known_user:
            feedback_metrics.flag("unknown_user", "accepted")
        if synthetic:
            feedback_metrics.metrics()["synthetic"].inc()
            return
        known_request = request_id in self._requests
        if not known_request:
            feedback_metrics.flag("unknown_request", "accepted")
        self._put(
            Event(
                request_id,
                str(user_id),
                str(item_id),
                event,
                model_version,
                datetime.now(UTC),
                known_request,
                time.perf_counter(),
            )
        )

    def _put(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            feedback_metrics.drop("queue_full")

    def close(self, timeout: float = 10.0) -> None:
        """Push and store what is queued, then stop the thread."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    # --- the pusher thread -------------------------------------------------------------------

    def _run(self) -> None:
        if self._repo is not None:
            try:
                from kuberec.serving.feedback_push import OnlinePusher

                self.pusher = OnlinePusher(self._repo)
            except Exception as exc:  # a broken store must not stop serving; the sink still runs
                log.warning(
                    "feedback push off: cannot open the Feast repo at %s: %s", self._repo, exc
                )
        while True:
            wait = self.sink.seconds_to_due() if self.sink is not None else None
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                first = ...
            batch: list[Event] = []
            stop = first is None
            if isinstance(first, Event):
                batch.append(first)
            while not stop and len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.append(more)
            self._handle(batch, final=stop)
            if stop:
                return

    def _handle(self, batch: list[Event], *, final: bool) -> None:
        if batch and self.pusher is not None:
            try:
                pushed = self.pusher.push(batch)
            except Exception as exc:  # store down: counted, logged once per interval
                feedback_metrics.metrics()["push_errors"].inc()
                self._warn(
                    f"feedback push to the online store failed ({type(exc).__name__}: "
                    f"{exc}); {len(batch)} events not pushed"
                )
            else:
                if pushed:
                    found = feedback_metrics.metrics()
                    found["pushed"].inc(pushed)
                    now = time.perf_counter()
                    for event in batch:
                        if event.accepted_at and event.event in INTERACTIONS:
                            found["lag"].observe(now - event.accepted_at)
        if self.sink is not None:
            if batch:
                self.sink.add(batch)
            if final or self.sink.due():
                self.sink.flush()

    def _warn(self, line: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL_S:
            self._last_log = now
            log.warning(line)
