"""kuberec's own Prometheus metrics, labelled by model version, and the middleware that counts.

BentoML serves ``/metrics`` from Prometheus' multiprocess registry (every worker
writes to ``$PROMETHEUS_MULTIPROC_DIR``), so metrics made with plain
``prometheus_client`` in a worker appear there next to BentoML's own. The
``model_version`` label is what lets a canary analysis compare two versions
scraped from one router.

The middleware sees every request, including those BentoML rejects before our
code runs, so status counts are complete. Labels are route templates only: a
path that is none of :data:`ENDPOINTS` (nor a probe, which is not counted)
is counted as ``endpoint="other"``, so requests to made-up paths cannot grow
``/metrics`` (BentoML's own request metrics are bounded in
:mod:`.bentoml_fixes`). It also
turns BentoML's 400 for an invalid body into 422 (the body, which names the
field in ``detail[].loc``, is kept): 422 is what clients of JSON APIs expect for
a well-formed request with invalid content.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import cache
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENDPOINTS = ("/recommend", "/similar", "/score", "/feedback")
PROBES = ("/metrics", "/healthz", "/livez", "/readyz")
OTHER = "other"  # the endpoint label of every other path
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Version:
    """The version label, set once the worker knows which model it serves."""

    value = "unknown"


def set_model_version(version: str, model_type: str) -> None:
    _Version.value = version
    metrics()["model"].labels(model_version=version, model_type=model_type).set(1)


def model_version() -> str:
    return _Version.value


@cache
def metrics() -> dict[str, Any]:
    """Created on first use, inside the worker, after BentoML set up multiprocess mode."""
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "requests": Counter(
            "kuberec_requests_total",
            "Requests by endpoint and HTTP status",
            ["endpoint", "status", "model_version"],
        ),
        "latency": Histogram(
            "kuberec_request_latency_seconds",
            "Request latency by endpoint",
            ["endpoint", "model_version"],
            buckets=LATENCY_BUCKETS,
        ),
        "fallbacks": Counter(
            "kuberec_fallbacks_total",
            "Answers from the popularity fallback (cold users)",
            ["endpoint", "model_version"],
        ),
        "feedback": Counter(
            "kuberec_feedback_events_total",
            "Feedback events by type",
            ["event", "model_version"],
        ),
        "batch_size": Histogram(
            "kuberec_batch_size",
            "Requests scored together in one model call (adaptive batching)",
            ["endpoint", "model_version"],
            buckets=BATCH_BUCKETS,
        ),
        "model": Gauge(
            "kuberec_model_info",
            "The model this server answers with (value 1)",
            ["model_version", "model_type"],
            multiprocess_mode="max",
        ),
    }


@cache
def child(name: str, *labels: str) -> Any:
    """The series of metric ``name`` with these label values (in the metric's label order).

    Looked up once per label combination: ``labels()`` hashes and locks on every
    call, a few percent of a request. The combinations are bounded (route
    templates, statuses, events, one model version per process).
    """
    return metrics()[name].labels(*labels)


def count_fallback(endpoint: str) -> None:
    child("fallbacks", endpoint, _Version.value).inc()


def observe_batch(endpoint: str, size: int) -> None:
    child("batch_size", endpoint, _Version.value).observe(size)


def count_feedback(event: str) -> None:
    child("feedback", event, _Version.value).inc()


class RequestMetrics:
    """ASGI middleware: count and time every request but probes; invalid bodies answer 422."""

    def __init__(self, app: ASGIApp, endpoints: tuple[str, ...] = ENDPOINTS) -> None:
        self.app = app
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PROBES:
            await self.app(scope, receive, send)
            return
        endpoint = path if path in self.endpoints else OTHER
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                if message["status"] == 400 and endpoint != OTHER:
                    message = {**message, "status": 422}
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            version = _Version.value
            child("requests", endpoint, str(status), version).inc()
            child("latency", endpoint, version).observe(time.perf_counter() - start)
