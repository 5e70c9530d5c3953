"""The hot routes (:mod:`kuberec.serving.hot_routes`): which requests they answer, and how.

Driven as an ASGI app in-process; the service behind them is a small target
that echoes the validated request, and the app they would pass a request on
to records that it did. The real service behind them is tested over HTTP in
``test_http.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import bentoml
import pytest
from pydantic import BaseModel

from kuberec.serving import bentoml_fixes, hot_routes
from kuberec.serving.hot_routes import HotRoutes
from kuberec.serving.schemas import RecommendRequest, ScoreRequest


class Echo:
    """A target answering with the request's fields; ``fail``: raise instead."""

    def __init__(self, ready: bool = True, fail: bool = False, delay_s: float = 0.0) -> None:
        self.is_ready, self.fail, self.delay_s = ready, fail, delay_s

    def ready(self) -> bool:
        return self.is_ready

    async def answer(
        self, route: str, request: BaseModel, synthetic: bool = False
    ) -> tuple[int, bytes]:
        if self.fail:
            raise RuntimeError("the model broke")
        await asyncio.sleep(self.delay_s)
        return 200, json.dumps(
            {"route": route, "synthetic": synthetic, **request.model_dump()}
        ).encode()


@pytest.fixture
def bound() -> Iterator[None]:
    yield
    hot_routes._Bound.target = None


async def _call(
    target: Echo | None,
    body: bytes,
    *,
    path: str = "/recommend",
    method: str = "POST",
    content_type: bytes | None = b"application/json",
    origin: bytes | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int | None, Any, bool]:
    """(status, decoded body, whether the inner app got the request)."""
    hot_routes._Bound.target = target
    passed: list[bool] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed.append(True)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = HotRoutes(
        inner, routes={"/recommend": RecommendRequest, "/score": ScoreRequest}, timeout_s=0.2
    )
    headers = [(b"content-type", content_type)] if content_type is not None else []
    if origin is not None:
        headers.append((b"origin", origin))
    headers.extend(extra or [])
    chunks = [
        {"type": "http.request", "body": body[:5], "more_body": True},
        {"type": "http.request", "body": body[5:], "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload), bool(passed)


def _run(target: Echo | None, body: bytes, **options: Any) -> tuple[int | None, Any, bool]:
    return asyncio.run(_call(target, body, **options))


@pytest.mark.usefixtures("bound")
def test_a_json_post_to_a_hot_route_is_validated_and_answered_by_the_service() -> None:
    status, body, passed = _run(Echo(), b'{"user_id": 7, "k": 3}')
    assert (status, passed) == (200, False)
    assert body["route"] == "/recommend" and body["user_id"] == 7 and body["k"] == 3
    assert body["exclude_seen"] is True  # the request model's defaults filled in
    assert body["synthetic"] is False


@pytest.mark.usefixtures("bound")
def test_canary_analysis_traffic_reaches_the_service_marked_synthetic() -> None:
    status, body, passed = _run(
        Echo(), b'{"user_id": 7}', extra=[(b"x-kuberec-traffic", b"Synthetic")]
    )
    assert (status, passed, body["synthetic"]) == (200, False, True)


@pytest.mark.usefixtures("bound")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"user_id": 1, "k": 0}', ["k"]),
        (b'{"user_id": 1, "k": true}', ["k"]),
        (b'{"user_id": 1, "exclude_sen": false}', ["exclude_sen"]),
        (b'{"k": 3}', ["user_id"]),
        (b"not json", []),
    ],
)
def test_an_invalid_body_gets_bentomls_422_naming_the_field(body: bytes, field: list[str]) -> None:
    status, answer, passed = _run(Echo(), body)
    assert (status, passed) == (422, False)
    assert answer["error"].endswith("validation error for RecommendRequest")
    assert field in [d["loc"] for d in answer["detail"]]


@pytest.mark.usefixtures("bound")
def test_a_failing_service_gets_bentomls_500_body() -> None:
    status, body, _ = _run(Echo(fail=True), b'{"user_id": 1}')
    assert status == 500
    assert body == {"error": "An unexpected error has occurred, please check the server log."}


@pytest.mark.usefixtures("bound")
def test_an_answer_slower_than_the_timeout_gets_bentomls_504() -> None:
    status, body, _ = _run(Echo(delay_s=5.0), b'{"user_id": 1}')
    assert status == 504
    assert body == {"error": "Not able to process the request in 0.2 seconds"}


@pytest.mark.usefixtures("bound")
@pytest.mark.parametrize(
    "case",
    [
        {"target": Echo(ready=False)},  # BentoML answers 503 while the model loads
        {"target": None},  # no service bound in this process
        {"content_type": b"text/csv"},  # BentoML's content negotiation
        {"origin": b"https://shop.example"},  # BentoML's CORS headers, when configured
        {"path": "/similar"},
        {"method": "GET"},
    ],
)
def test_other_requests_go_down_bentomls_path(case: dict[str, Any]) -> None:
    target = case.pop("target", Echo())
    status, _, passed = _run(target, b'{"user_id": 1}', **case)
    assert (status, passed) == (299, True)


@pytest.mark.usefixtures("bound")
def test_a_body_without_a_content_type_is_read_as_json_as_bentoml_does() -> None:
    status, _, passed = _run(Echo(), b'{"user_id": 1}', content_type=None)
    assert (status, passed) == (200, False)


class _Inner:
    def __init__(self, app: Any) -> None:
        self.app = app


@bentoml.service(name="hot-routes-order")
class _Ordered:
    @bentoml.api
    def add(self, a: int) -> int:
        return a


def test_bentoml_puts_the_hot_routes_ahead_of_its_own_middlewares() -> None:
    from _bentoml_impl.server.app import ServiceAppFactory

    _Ordered.add_asgi_middleware(_Inner)  # type: ignore[attr-defined]
    _Ordered.add_asgi_middleware(HotRoutes, routes={"/add": RecommendRequest})  # type: ignore[attr-defined]
    bentoml_fixes.apply()
    _Ordered.inject_config()  # type: ignore[attr-defined]
    names = [m.cls.__name__ for m in ServiceAppFactory(_Ordered, is_main=True).middlewares]
    assert names[0] == "HotRoutes"
    assert names.index("_Inner") > names.index("TimeoutMiddleware")  # the others keep their order
