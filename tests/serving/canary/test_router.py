"""The canary router on loopback, in front of two small stand-in backends (no models needed).

The stand-ins answer like the service (/recommend with items, model_version and
request_id; /feedback), so these tests pin the router's own behaviour: the
sticky split, feedback to the version that served the request, run-time
weights, its per-track metrics, fault injection and shadow mode; and
``kuberec replay`` against it. Then what an attacker or a careless client
tries: admin calls without the token, backends that are not the job's, invalid
settings, invented feedback, made-up paths, deep nesting and huge bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
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
from kuberec.serving.canary.admin import bearer
from kuberec.serving.canary.local import free_port
from kuberec.serving.canary.metrics import ROUTER, interval, parse
from kuberec.serving.canary.router import Router
from kuberec.serving.canary.split import assign
from kuberec.serving.feedback_settings import SYNTHETIC, TRAFFIC_HEADER
from tests.support import raw_http

TOKEN = "test-admin-token"
ADMIN = bearer(TOKEN)


class Backend:
    """A stand-in server: fixed items, its own version name, and the feedback it received."""

    def __init__(self, version: str, items: list[int]) -> None:
        self.version, self.items = version, items
        self.feedback: list[dict[str, Any]] = []
        self.marks: list[str | None] = []  # the traffic header of each /recommend

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/recommend", self._recommend)
        app.router.add_post("/feedback", self._feedback)
        app.router.add_get("/readyz", lambda _r: web.json_response({}))
        return app

    async def _recommend(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.marks.append(request.headers.get(TRAFFIC_HEADER))
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
            # a client that hung up mid-body must not hold the teardown for aiohttp's 60 s
            await web.TCPSite(runner, "127.0.0.1", port, shutdown_timeout=2.0).start()
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
def loop() -> Iterator[Loop]:
    serving = Loop()
    try:
        yield serving
    finally:
        serving.close()


@pytest.fixture()
def setup(loop: Loop) -> tuple[Router, str, Backend, Backend]:
    stable, canary = Backend("v1", [1, 2, 3, 4]), Backend("v2", [3, 4, 5, 6])
    router = Router(loop.serve(stable.app()), loop.serve(canary.app()), weight=30, token=TOKEN)
    return router, loop.serve(router.app()), stable, canary


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple:
    headers = {"Content-Type": "application/json", **(headers or {})}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


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
    status, state, _ = _post(url + "/router/config", {"weight": 100}, ADMIN)
    assert (status, state["weight"]) == (200, 100)
    assert {_recommend(url, u)["model_version"] for u in range(20)} == {"v2"}
    assert _post(url + "/router/config", {"weight": 150}, ADMIN)[0] == 400
    _post(url + "/router/config", {"canary": None}, ADMIN)
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


def test_shadow_copies_are_marked_synthetic_so_their_impressions_are_not_stored(setup) -> None:
    router, url, stable, canary = setup
    router.configure(shadow=True)
    for user in range(10):
        _recommend(url, user)
    deadline = time.monotonic() + 10
    while len(canary.marks) < 10 and time.monotonic() < deadline:  # mirrored in the background
        time.sleep(0.05)
    assert set(canary.marks) == {SYNTHETIC}
    assert set(stable.marks) == {None}


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


# --- hardening: what an attacker or a careless client tries -----------------------------------


@pytest.mark.parametrize("path", ["/router/config", "/router/state", "/router/shadow"])
@pytest.mark.parametrize("headers", [{}, bearer("guessed"), {"Authorization": TOKEN}])
def test_an_admin_endpoint_without_the_token_answers_401_and_changes_nothing(
    setup, path: str, headers: dict[str, str]
) -> None:
    router, url, _, _ = setup
    if path == "/router/config":
        status = _post(url + path, {"weight": 100, "faults": {"canary": {"abort_rate": 1}}},
                       headers)[0]  # fmt: skip
    else:
        status = _get(url + path, headers)[0]
    assert status == 401
    assert router.weight == 30 and router.faults == {}


def test_the_metrics_need_no_token(setup) -> None:
    _, url, _, _ = setup
    assert _get(url + "/router/metrics")[0] == 200


@pytest.mark.parametrize("field", ["stable", "canary"])
def test_a_backend_that_is_not_one_of_the_jobs_servers_is_refused(
    setup, loop: Loop, field: str
) -> None:
    router, url, _, _ = setup
    before = router.state()
    elsewhere = loop.serve(Backend("intruder", [9]).app())  # another loopback service
    for target in ("file:///etc/passwd", elsewhere, "http://example.com", 42, ["a"]):
        status, body, _ = _post(url + "/router/config", {field: target}, ADMIN)
        assert (status, body["field"]) == (400, field), target
        assert "not a server of this job" in body["error"]
    assert router.state() == before
    assert {_recommend(url, u)["model_version"] for u in range(20)} == {"v1", "v2"}


@pytest.mark.parametrize(("body", "field"), [
    (b'{"weight": "abc"}', "weight"),
    (b'{"weight": 150}', "weight"),
    (b'{"weight": true}', "weight"),
    (b'{"weight": 12.5}', "weight"),
    (b'{"weight": NaN}', "weight"),
    (b'{"weight": null}', "weight"),
    (b'{"shadow": "yes"}', "shadow"),
    (b'{"shadow": 1}', "shadow"),
    (b'{"stable": null}', "stable"),
    (b'{"faults": "slow"}', "faults"),
    (b'{"faults": {"everyone": {"delay_ms": 1}}}', "faults.everyone"),
    (b'{"faults": {"canary": 5}}', "faults.canary"),
    (b'{"faults": {"canary": {"delay_ms": "abc"}}}', "faults.canary.delay_ms"),
    (b'{"faults": {"canary": {"delay_ms": Infinity}}}', "faults.canary.delay_ms"),
    (b'{"faults": {"canary": {"delay_ms": NaN}}}', "faults.canary.delay_ms"),
    (b'{"faults": {"canary": {"delay_ms": -1}}}', "faults.canary.delay_ms"),
    (b'{"faults": {"canary": {"delay_ms": 60001}}}', "faults.canary.delay_ms"),
    (b'{"faults": {"canary": {"delay_ms": true}}}', "faults.canary.delay_ms"),
    (b'{"faults": {"canary": {"abort_rate": 2}}}', "faults.canary.abort_rate"),
    (b'{"faults": {"canary": {"abort_rate": NaN}}}', "faults.canary.abort_rate"),
    (b'{"faults": {"canary": {"drop": 1}}}', "faults.canary.drop"),
    (b'{"colour": "blue"}', "colour"),
    (b'{"weight": 50, "shadow": "maybe"}', "shadow"),
])  # fmt: skip
def test_an_invalid_config_field_is_a_400_naming_it_and_nothing_changes(
    setup, body: bytes, field: str
) -> None:
    router, url, _, _ = setup
    before = router.state()
    status, answer, _ = _post(url + "/router/config", body, ADMIN)
    assert (status, answer["field"]) == (400, field), answer
    assert answer["error"].startswith(f"{field}: ")
    assert router.state() == before


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"weight"'])
def test_a_config_body_that_is_no_json_object_is_a_400(setup, body: bytes) -> None:
    _, url, _, _ = setup
    assert _post(url + "/router/config", body, ADMIN)[0] == 400


def test_valid_faults_within_the_bounds_are_applied(setup) -> None:
    router, url, _, _ = setup
    faults = {"canary": {"delay_ms": 60000, "abort_rate": 0.5}, "stable": {"abort_rate": 0}}
    status, state, _ = _post(url + "/router/config", {"faults": faults}, ADMIN)
    assert status == 200
    assert state["faults"]["canary"] == {"delay_ms": 60000.0, "abort_rate": 0.5}
    assert router.faults == state["faults"]


def test_feedback_for_a_request_id_the_router_did_not_issue_is_refused_and_counted(
    setup,
) -> None:
    _, url, stable, canary = setup
    invented = {"request_id": str(uuid.uuid4()), "user_id": 1, "item_id": 1, "event": "click"}
    status, body, _ = _post(url + "/feedback", invented)
    assert status == 422 and body["error"].startswith("request_id: ")
    assert _post(url + "/feedback", {"user_id": 1, "item_id": 1, "event": "click"})[0] == 422
    assert stable.feedback == [] and canary.feedback == []
    _, metrics = _get(url + "/router/metrics")
    assert "kuberec_router_feedback_rejected_total 2.0" in metrics
    assert 'event="click"' not in metrics
    issued = _recommend(url, 1)["request_id"]
    assert _post(url + "/feedback", {**invented, "request_id": issued})[0] == 200


def test_the_track_header_is_honoured_only_with_the_admin_token(setup) -> None:
    _, url, _, _ = setup
    on_stable = [u for u in range(40) if assign(u, 30) == "stable"][:10]
    pin = {"X-Kuberec-Track": "canary"}
    for user in on_stable:
        plain = _post(url + "/recommend", {"user_id": user, "k": 2}, pin)[1]
        assert plain["model_version"] == "v1"
        admin = _post(url + "/recommend", {"user_id": user, "k": 2}, {**pin, **ADMIN})[1]
        assert admin["model_version"] == "v2"


def test_unknown_paths_are_counted_under_one_label(setup) -> None:
    _, url, _, _ = setup
    for n in range(200):
        _get(f"{url}/no-such-path-{n}")
    _post(url + "/feedback", {"request_id": _recommend(url, 1)["request_id"], "user_id": 1,
                              "item_id": 1, "event": f"made-up-{uuid.uuid4()}"})  # fmt: skip
    _, metrics = _get(url + "/router/metrics")
    assert "no-such-path" not in metrics and "made-up" not in metrics
    assert 'endpoint="other"' in metrics
    requests = [line for line in metrics.splitlines()
                if line.startswith("kuberec_router_requests_total{")]  # fmt: skip
    assert sum(float(line.split()[-1]) for line in requests if '"other"' in line) == 200
    assert len(requests) <= 2 * 5  # two tracks, four endpoints and `other`


@pytest.mark.parametrize("path", ["/recommend", "/router/config"])
def test_deeply_nested_json_is_a_422_not_a_server_error(setup, path: str) -> None:
    _, url, _, _ = setup
    nested = b'{"user_id": 1, "filters": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body, _ = _post(url + path, nested, ADMIN)
    assert status == 422 and "nested too deeply" in body["error"]


@pytest.mark.parametrize("path", ["/recommend", "/router/config"])
def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(setup, path: str) -> None:
    _, url, _, _ = setup
    assert raw_http.declared_over_limit(url, path) == 413  # answered at once


def test_a_chunked_body_is_cut_off_at_the_limit(setup) -> None:
    _, url, _, _ = setup
    assert raw_http.chunked_over_limit(url, "/recommend") == 413


def test_each_client_error_is_logged_as_one_line_without_a_traceback(
    setup, caplog: pytest.LogCaptureFixture
) -> None:
    _, url, _, _ = setup
    with caplog.at_level(logging.INFO, logger="kuberec.serving.canary.router"):
        _post(url + "/router/config", {"weight": "abc"}, ADMIN)
        _post(url + "/router/config", {"weight": 5})
        _post(url + "/feedback", {"request_id": "invented"})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(": ", 1)[1][:3] for r in warnings] == ["400", "401", "422"]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in warnings)
