"""A small HTTP router in front of a stable and a canary BentoML server (the local platform).

On Kubernetes the split is the Gateway's weighted HTTPRoute; locally this
process plays that part on loopback. ``POST /recommend`` (and every other
request with a ``user_id`` in its JSON body) goes to the version the sticky
split (:mod:`.split`) gives the user; ``POST /feedback`` goes to the version
that served its ``request_id`` (remembered from the responses), falling back
to the user's split, so clicks are credited to the model that showed the
items. The router measures each track itself (requests, errors, latency,
feedback events) and exposes that as Prometheus text on ``/router/metrics``.

In shadow mode every request is served by the stable version and mirrored to
the candidate in the background; its answers are never returned, only compared
(overlap@K of the item lists, latency of both) on ``/router/shadow``.

Admin (``Authorization: Bearer <token>``, see :mod:`.admin`; 401 without it):
``GET /router/state``, ``GET /router/shadow``, ``POST /router/config`` with
any of ``stable``, ``canary`` (a URL or null), ``weight`` (0..100), ``shadow``
(bool) and ``faults`` (``{"canary": {"delay_ms": 300, "abort_rate": 0.5}}``:
injected delay and 503s per track, as a service mesh's fault injection, to
rehearse a rollback). A backend URL must be one of the job's own servers
(``servers``); any invalid field is a 400 naming it, and nothing changes. With
the token, a header ``X-Kuberec-Track: stable|canary`` pins one request to a
track (diagnostics); without it the header is ignored. ``/router/metrics``
needs no token: its labels are route templates (unknown paths count as
``other``), so nobody can grow it.

Feedback is credited only to a ``request_id`` this router issued (the last
:data:`REMEMBERED_REQUESTS` ``/recommend`` answers): any other is answered 422,
not forwarded, and counted in ``kuberec_router_feedback_rejected``. Bodies are
capped and nesting is bounded (:mod:`kuberec.serving.limits`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, get_args

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kuberec.errors import ConfigError
from kuberec.serving.canary.admin import is_bearer, read_token
from kuberec.serving.canary.split import Track, assign, check_weight
from kuberec.serving.feedback_settings import SYNTHETIC, TRAFFIC_HEADER
from kuberec.serving.limits import (
    MAX_BODY_BYTES,
    NestingError,
    declared_length,
    loads,
    too_large_message,
)
from kuberec.serving.metrics import ENDPOINTS, OTHER, PROBES
from kuberec.serving.schemas import Event

log = logging.getLogger(__name__)

TRACK_HEADER = "X-Kuberec-Track"
LATENCY_BUCKETS = (
    0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip
_HOP_HEADERS = {
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "content-encoding", "proxy-connection", "te", "trailer",
}  # fmt: skip
REMEMBERED_REQUESTS = 100_000
MAX_DELAY_MS = 60_000
_EVENTS = frozenset(get_args(Event))
_SHADOW_SAMPLES = 10_000


class FieldError(ConfigError):
    """An admin setting that is not valid; ``field`` names it (``faults.canary.delay_ms``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Router:
    """The routing state and the aiohttp application serving it."""

    def __init__(
        self,
        stable: str,
        canary: str | None = None,
        weight: int = 0,
        *,
        token: str,
        servers: Callable[[], Collection[str]] | None = None,
        shadow: bool = False,
        salt: str = "",
        timeout_s: float = 30.0,
    ) -> None:
        if not token:
            raise ConfigError("the router needs an admin token")
        self.token = token
        initial = {u.rstrip("/") for u in (stable, canary) if u}
        #: The job's own server URLs: the only backends a config may name.
        self.servers = servers or (lambda: initial)
        self.backends: dict[Track, str | None] = {"stable": stable.rstrip("/"), "canary": None}
        self.weight = 0
        self.shadow = False
        self.salt = salt
        self.timeout_s = timeout_s
        self.faults: dict[str, dict[str, float]] = {}
        self.configure(canary=canary, weight=weight, shadow=shadow)
        self._served_by: OrderedDict[str, Track] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._init_metrics()
        self._reset_shadow()

    # --- configuration ----------------------------------------------------------------------

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change backends, weight, shadow mode or faults; all or nothing; returns the new state.

        Raises :class:`FieldError` naming the first invalid field, before changing anything.
        """
        checked = self._validated(changes)
        if "stable" in checked:
            self.backends["stable"] = checked["stable"]
        if "canary" in checked:
            if checked["canary"] != self.backends["canary"]:
                self._reset_shadow()
                self.faults.pop("canary", None)
            self.backends["canary"] = checked["canary"]
        self.weight = checked.get("weight", self.weight)
        self.shadow = checked.get("shadow", self.shadow)
        self.faults = checked.get("faults", self.faults)
        if self.backends["canary"] is None:
            self.weight, self.shadow = 0, False
        return self.state()

    def _validated(self, changes: dict[str, Any]) -> dict[str, Any]:
        for name in changes:
            if name not in ("stable", "canary", "weight", "shadow", "faults"):
                raise FieldError(
                    str(name)[:100],
                    "unknown router setting (stable, canary, weight, shadow, faults)",
                )
        checked: dict[str, Any] = {}
        for name in ("stable", "canary"):
            if name in changes:
                checked[name] = self._backend(name, changes[name])
        if "weight" in changes:
            try:
                checked["weight"] = check_weight(changes["weight"])
            except ConfigError as exc:
                raise FieldError("weight", str(exc)) from None
        if "shadow" in changes:
            shadow = changes["shadow"]
            if not isinstance(shadow, bool):
                raise FieldError("shadow", f"must be true or false, got {_shown(shadow)}")
            checked["shadow"] = changes["shadow"]
        if "faults" in changes:
            checked["faults"] = _check_faults(changes["faults"])
        return checked

    def _backend(self, name: str, url: object) -> str | None:
        """A URL of one of the job's servers (or None: no canary)."""
        if url is None and name == "canary":
            return None
        allowed = {u.rstrip("/") for u in self.servers()}
        allowed |= {u for u in self.backends.values() if u}
        if not isinstance(url, str) or url.rstrip("/") not in allowed:
            raise FieldError(
                name,
                f"{_shown(url)} is not a server of this job "
                f"(known: {', '.join(sorted(allowed)) or 'none'})",
            )
        return url.rstrip("/")

    def state(self) -> dict[str, Any]:
        return {
            "stable": self.backends["stable"],
            "canary": self.backends["canary"],
            "weight": self.weight,
            "shadow": self.shadow,
            "faults": self.faults,
        }

    def track_for(self, user_id: object) -> Track:
        """The sticky split; in shadow mode, and without a canary, everyone is on stable."""
        if self.shadow or self.backends["canary"] is None:
            return "stable"
        return assign(user_id, self.weight, self.salt)

    # --- the application ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_limits])
        app.router.add_get("/router/state", self._admin(self._get_state))
        app.router.add_post("/router/config", self._admin(self._post_config))
        app.router.add_get("/router/metrics", self._get_metrics)
        app.router.add_get("/router/shadow", self._admin(self._get_shadow))
        app.router.add_route("*", "/{path:.*}", self._proxy)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return is_bearer(request.headers.get("Authorization"), self.token)

    def _admin(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def checked(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return _client_error(
                    request,
                    401,
                    "the admin endpoints need the job's token: "
                    "Authorization: Bearer <serving/router.token>",
                )
            return await handler(request)

        return checked

    async def _open(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=200),
            auto_decompress=False,
        )

    async def _close(self, _app: web.Application) -> None:
        for task in list(self._background):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    async def _get_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _post_config(self, request: web.Request) -> web.Response:
        try:
            changes = loads(await request.read())
        except NestingError as exc:
            return _client_error(request, 422, str(exc))
        except (ValueError, UnicodeDecodeError) as exc:
            return _client_error(request, 400, f"the body is not JSON: {exc}")
        if not isinstance(changes, dict):
            return _client_error(request, 400, "the body must be a JSON object")
        try:
            state = self.configure(**{str(k): v for k, v in changes.items()})
        except FieldError as exc:
            return _client_error(request, 400, str(exc), field=exc.field)
        log.info("configured: %s", json.dumps(state))
        return web.json_response(state)

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _get_shadow(self, _request: web.Request) -> web.Response:
        return web.json_response(self.shadow_report())

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        endpoint = "/" + request.match_info["path"]
        try:
            payload = _json_object(body) if request.method == "POST" else None
        except NestingError as exc:
            return _client_error(request, 422, str(exc))
        if endpoint == "/feedback" and request.method == "POST":
            served = self._served_by.get(str((payload or {}).get("request_id")))
            if served is None:
                self._feedback_rejected.inc()
                return _client_error(
                    request,
                    422,
                    "request_id: not an answer of this router "
                    f"(feedback is credited only to the last "
                    f"{REMEMBERED_REQUESTS} /recommend request ids it issued)",
                )
        track = self._choose(request, endpoint, payload)
        started = time.perf_counter()
        status, headers, content = await self._forward(track, request, body)
        seconds = time.perf_counter() - started
        self._record(track, endpoint, status, seconds, payload)
        if endpoint == "/recommend" and status == 200:
            answer = _json_object(content)
            if answer is not None and isinstance(answer.get("request_id"), str):
                self._remember(answer["request_id"], track)
            if self.shadow and self.backends["canary"] is not None and answer is not None:
                self._spawn(self._mirror(request, body, answer, seconds))
        headers[TRACK_HEADER] = track
        return web.Response(status=status, body=content, headers=headers)

    # --- routing --------------------------------------------------------------------------------

    def _choose(self, request: web.Request, endpoint: str, payload: dict | None) -> Track:
        pinned = request.headers.get(TRACK_HEADER)
        if (
            pinned in ("stable", "canary")
            and self.backends[pinned] is not None  # type: ignore[index]
            and self._authorized(request)
        ):
            return pinned  # type: ignore[return-value]
        if payload is None:
            return "stable"
        if endpoint == "/feedback":
            served = self._served_by.get(str(payload.get("request_id")))
            if served is not None:
                return served
        if "user_id" in payload:
            return self.track_for(payload["user_id"])
        return "stable"

    async def _forward(
        self, track: Track, request: web.Request, body: bytes, *, synthetic: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        base = self.backends[track]
        if base is None:  # feedback for a canary that has been removed
            return 410, {"Content-Type": "application/json"}, b'{"error": "version removed"}'
        fault = self.faults.get(track)
        if fault and not _is_probe(request.path):
            if fault.get("delay_ms"):
                await asyncio.sleep(fault["delay_ms"] / 1000.0)
            if random.random() < fault.get("abort_rate", 0.0):
                message = json.dumps({"error": f"injected fault on {track}"}).encode()
                return 503, {"Content-Type": "application/json"}, message
        headers = {
            k: v for k, v in request.headers.items()
            if k.lower() not in _HOP_HEADERS and k.lower() != TRACK_HEADER.lower()
            and not (k.lower() == "authorization" and is_bearer(v, self.token))
        }  # fmt: skip
        if synthetic:
            headers[TRAFFIC_HEADER] = SYNTHETIC
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, base + request.path_qs, data=body, headers=headers
            ) as response:
                content = await response.read()
                out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
                return response.status, out, content
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = json.dumps({"error": f"{track} backend unavailable: {exc!r}"})
            return 502, {"Content-Type": "application/json"}, message.encode()

    def _remember(self, request_id: str, track: Track) -> None:
        self._served_by[request_id] = track
        if len(self._served_by) > REMEMBERED_REQUESTS:
            self._served_by.popitem(last=False)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- measurements -----------------------------------------------------------------------------

    def _init_metrics(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "kuberec_router_requests", "Requests forwarded, per track and endpoint",
            ["track", "endpoint"], registry=self.registry,
        )  # fmt: skip
        self._errors = Counter(
            "kuberec_router_errors", "Forwarded requests that failed (5xx or unreachable)",
            ["track", "endpoint"], registry=self.registry,
        )  # fmt: skip
        self._latency = Histogram(
            "kuberec_router_request_duration_seconds", "Backend latency seen by the router",
            ["track", "endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._feedback = Counter(
            "kuberec_router_feedback", "Feedback events forwarded, per track and event",
            ["track", "event"], registry=self.registry,
        )  # fmt: skip
        self._feedback_rejected = Counter(
            "kuberec_router_feedback_rejected",
            "Feedback refused: its request_id is not one this router issued (or remembers)",
            registry=self.registry,
        )  # fmt: skip

    def _record(
        self, track: str, endpoint: str, status: int, seconds: float, payload: dict | None
    ) -> None:
        if _is_probe(endpoint):
            return
        endpoint = endpoint if endpoint in ENDPOINTS else OTHER  # a bounded set of labels
        self._requests.labels(track, endpoint).inc()
        self._latency.labels(track, endpoint).observe(seconds)
        if status >= 500:
            self._errors.labels(track, endpoint).inc()
        elif endpoint == "/feedback" and status < 400 and payload is not None:
            event = payload.get("event")
            self._feedback.labels(track, event if event in _EVENTS else OTHER).inc()

    def _reset_shadow(self) -> None:
        self._shadow_stats: dict[str, Any] = {
            "requests": 0, "errors": 0, "overlap_sum": 0.0,
            "serving_ms": deque(maxlen=_SHADOW_SAMPLES),
            "shadow_ms": deque(maxlen=_SHADOW_SAMPLES),
        }  # fmt: skip

    async def _mirror(
        self, request: web.Request, body: bytes, served: dict, served_s: float
    ) -> None:
        started = time.perf_counter()
        # never shown to anyone: marked synthetic, so its impressions are not stored
        status, _, content = await self._forward("canary", request, body, synthetic=True)
        seconds = time.perf_counter() - started
        stats = self._shadow_stats
        stats["requests"] += 1
        self._latency.labels("shadow", "/recommend").observe(seconds)
        answer = _json_object(content) if status == 200 else None
        if answer is None:
            stats["errors"] += 1
            self._errors.labels("shadow", "/recommend").inc()
            return
        mine, theirs = _item_ids(served), _item_ids(answer)
        k = len(mine) or 1
        stats["overlap_sum"] += len(set(mine) & set(theirs[:k])) / k
        stats["serving_ms"].append(served_s * 1000.0)
        stats["shadow_ms"].append(seconds * 1000.0)

    def shadow_report(self) -> dict[str, Any]:
        """overlap@K of the shadow's lists with the served ones, and both latencies."""
        s = self._shadow_stats
        answered = s["requests"] - s["errors"]
        return {
            "shadow": self.shadow,
            "candidate": self.backends["canary"],
            "requests": s["requests"],
            "errors": s["errors"],
            "overlap_at_k": round(s["overlap_sum"] / answered, 4) if answered else None,
            "serving_p50_ms": _percentile(s["serving_ms"], 50),
            "serving_p95_ms": _percentile(s["serving_ms"], 95),
            "shadow_p50_ms": _percentile(s["shadow_ms"], 50),
            "shadow_p95_ms": _percentile(s["shadow_ms"], 95),
        }


def _is_probe(path: str) -> bool:
    return path.startswith(PROBES)


def _check_faults(faults: object) -> dict[str, dict[str, float]]:
    """``{track: {"delay_ms": 0..60000, "abort_rate": 0..1}}``; ``{}`` clears them."""
    if not isinstance(faults, dict):
        raise FieldError("faults", 'must be an object like {"canary": {"delay_ms": 300}}')
    checked: dict[str, dict[str, float]] = {}
    for track, fault in faults.items():
        if track not in ("stable", "canary"):
            raise FieldError(f"faults.{str(track)[:100]}", "not a track (stable, canary)")
        if not isinstance(fault, dict):
            raise FieldError(f"faults.{track}", "must be an object with delay_ms, abort_rate")
        unknown = sorted(str(k)[:100] for k in fault if k not in ("delay_ms", "abort_rate"))
        if unknown:
            raise FieldError(
                f"faults.{track}.{unknown[0]}", "unknown setting (delay_ms, abort_rate)"
            )
        delay = _number(fault, "delay_ms", f"faults.{track}.delay_ms", MAX_DELAY_MS)
        rate = _number(fault, "abort_rate", f"faults.{track}.abort_rate", 1.0)
        checked[track] = {"delay_ms": delay, "abort_rate": rate}
    return checked


def _number(values: dict[str, Any], key: str, field: str, most: float) -> float:
    """A finite JSON number within ``0..most`` (booleans and strings are not numbers)."""
    value = values.get(key, 0.0)
    if (
        isinstance(value, bool) or not isinstance(value, int | float)
        or not math.isfinite(value) or not 0 <= value <= most
    ):  # fmt: skip
        raise FieldError(field, f"must be a number within 0..{most:g}, got {_shown(value)}")
    return float(value)


def _shown(value: object) -> str:
    """A value for an error message: JSON, cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _json_object(body: bytes) -> dict | None:
    """The body as a JSON object, None when it is none; :class:`NestingError` when too deep."""
    try:
        value = loads(body) if body else None
    except NestingError:
        raise
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _client_error(
    request: web.Request, status: int, message: str, *, field: str | None = None
) -> web.Response:
    """A 4xx answered by the router itself: one log line, no traceback."""
    log.warning("%s %s: %d %s", request.method, request.path[:200], status, message)
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


@web.middleware
async def _limits(request: web.Request, handler: Any) -> web.StreamResponse:
    """413 before reading a body over the limit (declared), or once a chunked one passes it."""
    length = declared_length(request.headers.get("Content-Length"))
    if length is not None and length > MAX_BODY_BYTES:
        return _client_error(request, 413, too_large_message(length))
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _client_error(request, 413, too_large_message())


def _item_ids(answer: dict) -> list[str]:
    """Item ids of a /recommend answer: ``items`` as ids or as ``{"item_id": ...}`` objects."""
    items = answer.get("items") or []
    return [str(i.get("item_id") if isinstance(i, dict) else i) for i in items]


def _percentile(samples: deque[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 3)


def main(argv: list[str] | None = None) -> None:
    """``python -m kuberec.serving.canary.router --port P --stable URL --token-file F``."""
    parser = argparse.ArgumentParser(prog="kuberec-router", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stable", required=True, help="stable server URL")
    parser.add_argument("--canary", help="canary server URL")
    parser.add_argument("--weight", type=int, default=0, help="canary percent, 0..100")
    parser.add_argument("--shadow", action="store_true", help="mirror to the canary instead")
    parser.add_argument("--salt", default="", help="reshuffles who is on the canary")
    parser.add_argument(
        "--token-file",
        type=Path,
        required=True,
        help="the admin token (mode 0600), see kuberec.serving.canary.admin",
    )
    parser.add_argument(
        "--servers-file",
        type=Path,
        help="a JSON list of the job's server URLs, read at each config change; "
        "the only URLs a config may name (default: --stable, --canary)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    servers = None
    if args.servers_file is not None:
        path = args.servers_file

        def servers() -> list[str]:
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError):
                return []
            return [u for u in found if isinstance(u, str)] if isinstance(found, list) else []

    router = Router(args.stable, args.canary, args.weight, token=read_token(args.token_file),
                    servers=servers, shadow=args.shadow, salt=args.salt)  # fmt: skip
    web.run_app(router.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
