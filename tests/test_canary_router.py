"""The canary router on loopback, in front of two small stand-in backends (no models needed).

The stand-ins answer like the service (/recommend with items, model_version and
request_id; /feedback), so these tests pin the router's own behaviour: the
sticky split, feedback to the version that served the request, run-time
weights, its per-track metrics, fault injection and shadow mode; and
``kuberec replay`` against it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

from kuberec.cli import main
from kuberec.serving.canary.local import free_port
from kuberec.serving.canary.metrics import ROUTER, interval, parse
from kuberec.serving.canary.router import Router
from kuberec.serving.canary.split import assign


class Backend:
    """A stand-in server: fixed items, its own version name, and the feedback it received."""

    def __init__(self, version: str, items: list[int]) -> None:
        self.version, self.items = version, items
        self.feedback: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/recommend", self._recommend)
        app.router.add_post("/feedback", self._feedback)
        app.router.add_get("/readyz", lambda _r: web.json_response({}))
        return app

    async def _recommend(self, request: web.Request) -> web.Response:
        body = await request.json()
        items = [{"item_id": i, "score": 1.0, "explanation": ""} for i in self.items[: body["k"]]]
        return web.json_response({"items": items, "model_version": self.version,
                                  "request_id": str(uuid.uuid4()), "fallback": False})  # fmt: skip

    async def _feedback(self, request: web.Request) -> web.Response:
        self.feedback.append(await request.json())
        return web.json_response({"accepted": True, "model_version": self.version})


class Loop:
    """An asyncio loop in a thread serving aiohttp apps on free loopback ports."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def serve(self, app: web.Application) -> str:
        port = free_port()

        async def start() -> None:
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10)
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        async def stop() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture()
def setup() -> Iterator[tuple[Router, str, Backend, Backend]]:
    loop = Loop()
    stable, canary = Backend("v1", [1, 2, 3, 4]), Backend("v2", [3, 4, 5, 6])
    router = Router(loop.serve(stable.app()), loop.serve(canary.app()), weight=30)
    url = loop.serve(router.app())
    try:
        yield router, url, stable, canary
    finally:
        loop.close()


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple:
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def _recommend(url: str, user: int) -> dict[str, Any]:
    return _post(url + "/recommend", {"user_id": user, "k": 2})[1]


def test_each_user_is_served_by_the_version_of_its_split(setup) -> None:
    _, url, _, _ = setup
    for user in range(60):
        expected = "v2" if assign(user, 30) == "canary" else "v1"
        assert _recommend(url, user)["model_version"] == expected


def test_feedback_goes_to_the_version_that_served_the_request_even_after_a_weight_change(
    setup,
) -> None:
    router, url, stable, canary = setup
    user = next(u for u in range(1000) if assign(u, 30) == "stable" and assign(u, 100) == "canary")
    answer = _recommend(url, user)
    router.configure(weight=100)  # the user moves to the canary ...
    event = {"request_id": answer["request_id"], "user_id": user, "item_id": 1, "event": "click"}
    assert _post(url + "/feedback", event)[0] == 200
    assert stable.feedback == [event] and canary.feedback == []  # ... its click stays with v1


def test_the_weight_changes_at_run_time_through_the_admin_endpoint(setup) -> None:
    _, url, _, _ = setup
    status, state, _ = _post(url + "/router/config", {"weight": 100})
    assert (status, state["weight"]) == (200, 100)
    assert {_recommend(url, u)["model_version"] for u in range(20)} == {"v2"}
    assert _post(url + "/router/config", {"weight": 150})[0] == 400
    _post(url + "/router/config", {"canary": None})
    assert {_recommend(url, u)["model_version"] for u in range(20)} == {"v1"}


def test_the_router_counts_requests_errors_and_feedback_per_track(setup) -> None:
    router, url, _, _ = setup
    with urllib.request.urlopen(url + "/router/metrics") as response:
        before = parse(response.read().decode(), ROUTER)
    router.configure(faults={"canary": {"abort_rate": 1.0}})
    users = range(100)
    answers = [_post(url + "/recommend", {"user_id": u, "k": 2}) for u in users]
    served = [a for a in answers if a[0] == 200]
    for _, body, _ in served[:5]:
        _post(url + "/feedback", {"request_id": body["request_id"], "user_id": 0,
                                  "item_id": 1, "event": "impression"})  # fmt: skip
    with urllib.request.urlopen(url + "/router/metrics") as response:
        after = parse(response.read().decode(), ROUTER)
    m = interval(before, after)
    on_canary = sum(assign(u, 30) == "canary" for u in users)
    assert (m["canary"].requests, m["canary"].errors) == (on_canary, on_canary)
    assert (m["stable"].requests, m["stable"].errors) == (100 - on_canary, 0)
    assert m["stable"].impressions == 5 and m["stable"].latency_p95_ms is not None
    assert {a[2]["X-Kuberec-Track"] for a in answers if a[0] == 503} == {"canary"}


def test_shadow_mode_serves_stable_and_compares_the_candidates_lists(setup) -> None:
    router, url, _, _ = setup
    router.configure(shadow=True)
    versions = {_recommend(url, u)["model_version"] for u in range(30)}
    report = router.shadow_report()
    assert versions == {"v1"}
    assert report["requests"] >= 25  # mirrored in the background
    assert report["overlap_at_k"] == 0.0  # [1, 2] vs [3, 4]
    assert report["shadow_p95_ms"] is not None and report["serving_p95_ms"] is not None


def test_kuberec_replay_sends_visits_and_clicks_on_held_out_items(
    setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, stable, canary = setup
    held = tmp_path / "held.csv"
    pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [1, 9, 4, 7]}).to_csv(held, index=False)
    code = main(["replay", url, "--interactions", str(held), "--rate", "50", "--k", "2"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (report["requests"], report["errors"], report["impressions"]) == (3, 0, 6)
    clicks = [f for f in stable.feedback + canary.feedback if f["event"] == "click"]
    # user 1 took item 1 (v1 shows [1, 2]); user 2 took 4 (only v2 shows it); user 3 took 7
    expected = {(1, 1)} if assign(1, 30) == "stable" else set()
    expected |= {(2, 4)} if assign(2, 30) == "canary" else set()
    assert {(c["user_id"], c["item_id"]) for c in clicks} == expected
    assert report["clicks"] == len(expected)
