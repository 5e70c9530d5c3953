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
def server() -> Iterator[tuple[str, list[tuple[str, str | None]], list[tuple[str, int]]]]:
    """A stand-in recommender that records each request's path and traffic header, and each
    feedback event's kind and item, in the order they arrive."""
    seen: list[tuple[str, str | None]] = []
    feedback: list[tuple[str, int]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get(TRAFFIC_HEADER)))
        if request.path == "/recommend":
            items = [{"item_id": i} for i in (7, 8, 9)]
            return web.json_response({"items": items, "model_version": "v1", "request_id": "r-1"})
        body = await request.json()
        feedback.append((body["event"], body["item_id"]))
        await asyncio.sleep(0.01 if body["event"] == "impression" else 0.0)
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
    yield f"http://127.0.0.1:{port}", seen, feedback
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


HELD_OUT = pd.DataFrame({"user_id": [1, 1], "item_id": [7, 9]})


def test_synthetic_replay_marks_every_request(server: tuple[str, list, list]) -> None:
    url, seen, _ = server
    report = replay(url, HELD_OUT, rate=50, limit=2, synthetic=True)
    assert report.clicks == 4
    assert {path for path, _ in seen} == {"/recommend", "/feedback"}
    assert {mark for _, mark in seen} == {SYNTHETIC}


def test_replay_on_purpose_is_not_marked(server: tuple[str, list, list]) -> None:
    url, seen, _ = server
    replay(url, HELD_OUT, rate=50, limit=2)
    assert seen and {mark for _, mark in seen} == {None}


def test_each_click_arrives_right_after_its_items_impression(
    server: tuple[str, list, list],
) -> None:
    """So feedback that lags is cut at an interval's end with its clicks in proportion: sent
    all at once, the clicks would queue behind the impressions (slower here) and arrive last."""
    url, _, feedback = server
    replay(url, HELD_OUT, rate=50, limit=1)
    assert feedback == [
        ("impression", 7), ("click", 7), ("impression", 8), ("impression", 9), ("click", 9),
    ]  # fmt: skip


def test_list_impressions_send_the_top_item_and_at_most_one_click(
    server: tuple[str, list, list],
) -> None:
    url, _, feedback = server
    report = replay(url, HELD_OUT, rate=50, limit=1, impressions="list")
    assert feedback == [("impression", 7), ("click", 7)]
    assert report.feedback_errors == 0 and report.to_dict()["feedback_failures"] == {}
