"""Two narrow adjustments of BentoML 1.4 internals, applied when the service module loads.

- Bounded labels: BentoML's request metrics (``bentoml_service_request_*``)
  label every request with its raw path, so requests to made-up paths grew
  ``/metrics`` without bound (3,000 unique paths: 78k series). Its middleware
  now sees only the service's endpoints; every other path is counted once, as
  ``endpoint="other"``, by kuberec's own :class:`~.metrics.RequestMetrics`.
- One-line client errors: BentoML logs every rejected request (an invalid
  body: 4xx) with a full traceback, ~2 KB a request. A client error is now one
  warning line naming the path, the status and the reason; a server error
  keeps its traceback.

- One local caller per endpoint: BentoML rebuilt the wrapper that calls an
  endpoint's method (``inspect.signature``, ``functools.wraps``) on every
  request, ~5 % of a request's event-loop CPU in ``benchmarks/serving_profile.py``.
  It is built once per service instance and endpoint now; it holds nothing
  request-specific (the method's parameters and their defaults).

- Outermost middlewares first: BentoML appends a service's ASGI middlewares
  after its own (traffic metrics, OpenTelemetry, timeout, concurrency), so
  every request paid for those before reaching them. A middleware class with
  ``outermost = True`` (:class:`~.hot_routes.HotRoutes`) now goes first in the
  stack, so the requests it answers skip BentoML's per-request middlewares.

All patch a class or module attribute that BentoML looks up at call time;
:func:`apply` is idempotent.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from kuberec.serving.metrics import ENDPOINTS

log = logging.getLogger("kuberec.serving.service")
_APPLIED: list[bool] = []


def apply() -> None:
    if _APPLIED:
        return
    _bound_request_metrics()
    _one_line_client_errors()
    _one_local_caller_per_endpoint()
    _outermost_first()
    _APPLIED.append(True)


def _bound_request_metrics() -> None:
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = RunnerTrafficMetricsMiddleware.__call__

    async def only_endpoints(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") not in ENDPOINTS:
            await self.app(scope, receive, send)
            return
        await original(self, scope, receive, send)

    RunnerTrafficMetricsMiddleware.__call__ = only_endpoints  # type: ignore[method-assign]


def _outermost_first() -> None:
    from _bentoml_impl.server.app import ServiceAppFactory

    original = ServiceAppFactory.middlewares

    def middlewares(self: Any) -> list[Any]:
        found = original.fget(self)  # type: ignore[attr-defined]
        first = [m for m in found if getattr(m.cls, "outermost", False)]
        return first + [m for m in found if m not in first]

    ServiceAppFactory.middlewares = property(middlewares)  # type: ignore[assignment,method-assign]


def _one_local_caller_per_endpoint() -> None:
    from _bentoml_sdk.method import APIMethod

    original = APIMethod._local_call

    def cached(self: Any, instance: Any) -> Any:
        callers = instance.__dict__.setdefault("_kuberec_local_callers", {})
        found = callers.get(self.name)
        if found is None:
            found = callers[self.name] = original(self, instance)
        return found

    APIMethod._local_call = cached  # type: ignore[method-assign]


def _one_line_client_errors() -> None:
    from _bentoml_impl.server import app

    original = app.log_exception

    def log_exception(request: Any, exc_info: Any = True) -> None:
        error = sys.exc_info()[1]
        status = client_status(error)
        if status is None:
            original(request, exc_info)
            return
        log.warning("%s %s: %d %s", request.method, request.url.path, status,
                    describe(error))  # fmt: skip

    app.log_exception = log_exception


def client_status(error: BaseException | None) -> int | None:
    """The 4xx a client gets for ``error`` (422 for validation), None for a server error."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return 422  # BentoML's 400, turned into 422 by RequestMetrics
    if isinstance(error, BentoMLException):
        code = int(error.error_code.value)
        return code if 400 <= code < 500 else None
    return None


def describe(error: BaseException | None) -> str:
    """The error on one line; a validation error as ``field: message`` pairs."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                 for e in error.errors(include_input=False)[:5]]  # fmt: skip
        return "; ".join(parts)
    return " ".join(str(error).split())[:500]
