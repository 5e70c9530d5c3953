"""What ``kuberec replay`` sends: synthetic traffic (the canary analysis's) is marked on every
request, traffic replayed on purpose is not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pandas as pd
import pytest
from aiohttp import web

from kuberec.serving.canary.replay import replay
from kuberec.serving.feedback_settings import SYNTHETIC, TRAFFIC_HEADER
from kuberec.serving.server import free_port


@pytest.fixture()
def server() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A stand-in recommender that records each request's path and traffic header."""
    seen: list[tuple[str, str | None]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get(TRAFFIC_HEADER)))
        if request.path == "/recommend":
            return web.json_response(
                {"items": [{"item_id": 7}], "model_version": "v1", "request_id": "r-1"}
            )
        return web.json_response({"accepted": True})

    app = web.Application()
    app.router.add_post("/{path}", answer)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", seen
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


HELD_OUT = pd.DataFrame({"user_id": [1], "item_id": [7]})


def test_synthetic_replay_marks_every_request(server: tuple[str, list]) -> None:
    url, seen = server
    report = replay(url, HELD_OUT, rate=50, limit=2, synthetic=True)
    assert report.clicks == 2
    assert {path for path, _ in seen} == {"/recommend", "/feedback"}
    assert {mark for _, mark in seen} == {SYNTHETIC}


def test_replay_on_purpose_is_not_marked(server: tuple[str, list]) -> None:
    url, seen = server
    replay(url, HELD_OUT, rate=50, limit=2)
    assert seen and {mark for _, mark in seen} == {None}
