"""The feedback path's Prometheus metrics: what was accepted, flagged, pushed, stored or dropped.

Kept apart from :mod:`.metrics` (the request hot path) and made the same way:
created on first use inside the worker, so BentoML's multiprocess registry
serves them on ``/metrics``. Every counter's labels come from fixed sets
(:data:`REASONS`, :data:`DROPS`), so bad input cannot grow ``/metrics``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: Why an event was flagged: ``unknown_item`` is refused, the others are accepted.
REASONS = ("unknown_item", "unknown_user", "unknown_request")
#: Why accepted events were lost: the push queue was full, or the sink's backlog was.
DROPS = ("queue_full", "sink_backlog")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@cache
def metrics() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "flagged": Counter(
            "kuberec_feedback_flagged_total",
            "Feedback events by check that failed and what was done (accepted or rejected)",
            ["reason", "outcome"],
        ),
        "dropped": Counter(
            "kuberec_feedback_dropped_total",
            "Accepted feedback events lost before reaching the store or the sink",
            ["reason"],
        ),
        "synthetic": Counter(
            "kuberec_feedback_synthetic_total",
            "Feedback events marked synthetic (canary analysis traffic): counted, not kept",
        ),
        "pushed": Counter(
            "kuberec_feedback_pushed_total", "Events written to the Feast online store"
        ),
        "push_errors": Counter(
            "kuberec_feedback_push_errors_total", "Batches the online store refused"
        ),
        "stored": Counter(
            "kuberec_feedback_sink_events_total", "Events written to the Parquet sink"
        ),
        "sink_errors": Counter(
            "kuberec_feedback_sink_errors_total", "Failed writes to the Parquet sink"
        ),
        "backlog": Gauge(
            "kuberec_feedback_sink_backlog",
            "Events waiting for the sink",
            multiprocess_mode="livesum",
        ),
        "lag": Histogram(
            "kuberec_feedback_push_seconds",
            "From /feedback accepted to the online store written",
            buckets=LATENCY_BUCKETS,
        ),
    }


def flag(reason: str, outcome: str) -> None:
    metrics()["flagged"].labels(reason=reason, outcome=outcome).inc()


def drop(reason: str, count: int = 1) -> None:
    metrics()["dropped"].labels(reason=reason).inc(count)
