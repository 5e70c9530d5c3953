"""``/recommend`` and ``/score`` answered ahead of BentoML's per-request middlewares.

BentoML's ``@bentoml.api`` path costs, before any model work, about six times
a bare uvicorn + starlette request (``benchmarks/serving.py``'s no-op BentoML
line): its traffic-metrics, OpenTelemetry, timeout, concurrency and context
middlewares, a Starlette ``Request`` and router, the input model built and
taken apart into keyword arguments again, and response headers through
``simple_di``. :class:`HotRoutes` is an ASGI middleware that BentoML puts first
in its stack (:mod:`.bentoml_fixes` honours :attr:`HotRoutes.outermost`); for a
JSON ``POST`` to a hot route it reads the body, validates it with the same
pydantic model (the same 422 body BentoML gives, ``detail[].loc`` naming the
field, one log line), calls the same handler the ``@bentoml.api`` method calls
(:meth:`~.service.Recommender.answer`), and sends the encoded answer. It keeps
kuberec's request metrics and the body limit by running through the same
:class:`~.metrics.RequestMetrics` and :class:`~.limits.BodyLimit`.

Everything else goes down BentoML's path unchanged, and so does a hot route
while the model is still loading (BentoML's 503) or a body that is not JSON
(BentoML's content negotiation): the ``@bentoml.api`` endpoints stay, and give
the OpenAPI schema. So does a request from a browser (an ``Origin`` header),
for BentoML's CORS headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pydantic_core
from pydantic import BaseModel, ValidationError

from kuberec.serving.bentoml_fixes import describe
from kuberec.serving.feedback_settings import SYNTHETIC, TRAFFIC_HEADER
from kuberec.serving.limits import BodyLimit
from kuberec.serving.metrics import ASGIApp, Message, Receive, RequestMetrics, Scope, Send

log = logging.getLogger("kuberec.serving.service")

#: An answer: HTTP status and the encoded JSON body.
Answer = tuple[int, bytes]
Handler = Callable[[str, BaseModel, bool], Awaitable[Answer]]


class Target(Protocol):
    """What the hot routes call: the service instance, once its model is loaded."""

    def ready(self) -> bool: ...

    async def answer(self, route: str, request: BaseModel, synthetic: bool = False) -> Answer: ...


class _Bound:
    """The service instance the hot routes answer for (one per worker process)."""

    target: Target | None = None


def bind(target: Target) -> None:
    """Route hot requests to ``target`` (the service calls this from its constructor)."""
    _Bound.target = target


_TRAFFIC_HEADER = TRAFFIC_HEADER.lower().encode()  # ASGI header names are lower case
_SYNTHETIC = SYNTHETIC.encode()
_SERVER_ERROR = b'{"error":"An unexpected error has occurred, please check the server log."}'


class HotRoutes:
    """ASGI middleware: JSON ``POST`` s to ``routes`` answered directly, the rest passed on.

    ``routes`` maps each path to its request model; ``service`` names the
    service in the ``server`` header, as BentoML's answers do; an answer that
    takes longer than ``timeout_s`` is a 504, as BentoML's traffic timeout gives.
    """

    #: Put first in BentoML's middleware stack (:func:`.bentoml_fixes.apply`).
    outermost = True

    def __init__(
        self,
        app: ASGIApp,
        routes: dict[str, type[BaseModel]],
        service: str = "kuberec",
        timeout_s: float = 60.0,
    ) -> None:
        self.app = app
        self.routes = routes
        self.timeout_s = timeout_s
        self._headers = [
            (b"content-type", b"application/json"),
            (b"server", f"BentoML Service/{service}".encode()),
        ]
        self._direct = RequestMetrics(BodyLimit(self._respond), tuple(routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = _Bound.target
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self.routes
            and target is not None
            and target.ready()
            and _is_json(scope)
        ):
            await self._direct(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        target = _Bound.target
        assert target is not None
        body = await _read(receive)
        try:
            request = self.routes[path].model_validate_json(body)
        except ValidationError as error:
            log.warning("POST %s: 422 %s", path, describe(error))
            status, encoded = (
                422,
                pydantic_core.to_json(
                    {
                        "error": f"{error.error_count()} validation error for {error.title}",
                        "detail": error.errors(include_context=False, include_input=False),
                    }
                ),
            )
        else:
            try:
                async with asyncio.timeout(self.timeout_s):
                    status, encoded = await target.answer(path, request, _synthetic(scope))
            except TimeoutError:
                log.warning("POST %s: 504 no answer within %s s", path, self.timeout_s)
                status, encoded = (
                    504,
                    pydantic_core.to_json(
                        {"error": f"Not able to process the request in {self.timeout_s} seconds"}
                    ),
                )
            except Exception:  # as BentoML answers an endpoint's failure
                log.exception("POST %s: 500", path)
                status, encoded = 500, _SERVER_ERROR
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*self._headers, (b"content-length", str(len(encoded)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": encoded})


def _is_json(scope: Scope) -> bool:
    """JSON (no content type: BentoML reads JSON then too), and no ``Origin``.

    A request with an ``Origin`` header takes BentoML's path, whose CORS
    middleware (when configured) adds the headers a browser needs.
    """
    found = True
    for name, value in scope["headers"]:
        if name == b"content-type":
            found = value.split(b";", 1)[0].strip().lower() == b"application/json"
        elif name == b"origin":
            return False
    return found


def _synthetic(scope: Scope) -> bool:
    """Marked canary analysis traffic (:data:`~.feedback_settings.TRAFFIC_HEADER`)."""
    for name, value in scope["headers"]:
        if name == _TRAFFIC_HEADER:
            return value.strip().lower() == _SYNTHETIC
    return False


async def _read(receive: Receive) -> bytes:
    message: Message = await receive()
    body: Any = message.get("body", b"")
    if not message.get("more_body", False):
        return bytes(body)
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)
