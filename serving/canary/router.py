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

Admin: ``GET /router/state``, ``POST /router/config`` with any of ``stable``,
``canary`` (a URL or null), ``weight`` (0..100), ``shadow`` (bool) and
``faults`` (``{"canary": {"delay_ms": 300, "abort_rate": 0.5}}``: injected
delay and 503s per track, as a service mesh's fault injection, to rehearse a
rollback); a header ``X-Kuberec-Track: stable|canary`` pins one request to a
track (diagnostics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import OrderedDict, deque
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kuberec.errors import ConfigError
from kuberec.serving.canary.split import Track, assign, check_weight

TRACK_HEADER = "X-Kuberec-Track"
LATENCY_BUCKETS = (
    0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip
_HOP_HEADERS = {
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "content-encoding", "proxy-connection", "te", "trailer",
}  # fmt: skip
_REMEMBERED_REQUESTS = 100_000
_SHADOW_SAMPLES = 10_000


class Router:
    """The routing state and the aiohttp application serving it."""

    def __init__(
        self,
        stable: str,
        canary: str | None = None,
        weight: int = 0,
        *,
        shadow: bool = False,
        salt: str = "",
        timeout_s: float = 30.0,
    ) -> None:
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
        """Change backends, weight or shadow mode at run time; returns the new state."""
        unknown = set(changes) - {"stable", "canary", "weight", "shadow", "faults"}
        if unknown:
            raise ConfigError(f"unknown router setting(s): {sorted(unknown)}")
        if changes.get("stable") is not None:
            self.backends["stable"] = str(changes["stable"]).rstrip("/")
        if "canary" in changes:
            canary = changes["canary"]
            if canary != self.backends["canary"]:
                self._reset_shadow()
                self.faults.pop("canary", None)
            self.backends["canary"] = str(canary).rstrip("/") if canary else None
        if changes.get("weight") is not None:
            self.weight = check_weight(changes["weight"])
        if changes.get("shadow") is not None:
            self.shadow = bool(changes["shadow"])
        if changes.get("faults") is not None:
            self.faults = _check_faults(changes["faults"])
        if self.backends["canary"] is None:
            self.weight, self.shadow = 0, False
        return self.state()

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
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/router/state", self._get_state)
        app.router.add_post("/router/config", self._post_config)
        app.router.add_get("/router/metrics", self._get_metrics)
        app.router.add_get("/router/shadow", self._get_shadow)
        app.router.add_route("*", "/{path:.*}", self._proxy)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

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
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ConfigError("the body must be a JSON object")
            return web.json_response(self.configure(**changes))
        except (ConfigError, json.JSONDecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _get_shadow(self, _request: web.Request) -> web.Response:
        return web.json_response(self.shadow_report())

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = _json_object(body) if request.method == "POST" else None
        endpoint = "/" + request.match_info["path"]
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
        if pinned in ("stable", "canary") and self.backends[pinned] is not None:  # type: ignore[index]
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
        self, track: Track, request: web.Request, body: bytes
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
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        headers.pop(TRACK_HEADER, None)
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, base + request.path_qs, data=body, headers=headers
            ) as response:
                content = await response.read()
                out = {
                    k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS
                }
                return response.status, out, content
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = json.dumps({"error": f"{track} backend unavailable: {exc!r}"})
            return 502, {"Content-Type": "application/json"}, message.encode()

    def _remember(self, request_id: str, track: Track) -> None:
        self._served_by[request_id] = track
        if len(self._served_by) > _REMEMBERED_REQUESTS:
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

    def _record(
        self, track: str, endpoint: str, status: int, seconds: float, payload: dict | None
    ) -> None:
        if _is_probe(endpoint):
            return
        self._requests.labels(track, endpoint).inc()
        self._latency.labels(track, endpoint).observe(seconds)
        if status >= 500:
            self._errors.labels(track, endpoint).inc()
        elif endpoint == "/feedback" and status < 400 and payload is not None:
            self._feedback.labels(track, str(payload.get("event", "unknown"))).inc()

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
        status, _, content = await self._forward("canary", request, body)
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
    return path.startswith(("/metrics", "/healthz", "/readyz", "/livez"))


def _check_faults(faults: object) -> dict[str, dict[str, float]]:
    """``{track: {"delay_ms": >= 0, "abort_rate": 0..1}}``; ``{}`` clears them."""
    if not isinstance(faults, dict):
        raise ConfigError("faults must be an object like {\"canary\": {\"delay_ms\": 300}}")
    checked: dict[str, dict[str, float]] = {}
    for track, fault in faults.items():
        if track not in ("stable", "canary") or not isinstance(fault, dict):
            raise ConfigError(f"faults: {track!r} is not a track (stable, canary) with settings")
        unknown = set(fault) - {"delay_ms", "abort_rate"}
        if unknown:
            raise ConfigError(f"faults.{track}: unknown setting(s) {sorted(unknown)}")
        delay, rate = float(fault.get("delay_ms", 0.0)), float(fault.get("abort_rate", 0.0))
        if delay < 0 or not 0 <= rate <= 1:
            raise ConfigError(f"faults.{track}: delay_ms must be >= 0 and abort_rate in 0..1")
        checked[track] = {"delay_ms": delay, "abort_rate": rate}
    return checked


def _json_object(body: bytes) -> dict | None:
    try:
        value = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


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
    """``python -m kuberec.serving.canary.router --port P --stable URL [--canary URL]``."""
    parser = argparse.ArgumentParser(prog="kuberec-router", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stable", required=True, help="stable server URL")
    parser.add_argument("--canary", help="canary server URL")
    parser.add_argument("--weight", type=int, default=0, help="canary percent, 0..100")
    parser.add_argument("--shadow", action="store_true", help="mirror to the canary instead")
    parser.add_argument("--salt", default="", help="reshuffles who is on the canary")
    args = parser.parse_args(argv)
    router = Router(args.stable, args.canary, args.weight, shadow=args.shadow, salt=args.salt)
    web.run_app(router.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
