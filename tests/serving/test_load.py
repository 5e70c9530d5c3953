"""A real server under a burst: no 5xx, and :func:`stop_server` leaves no process behind.

The burst comes right after readiness, when a canary is judged hardest: 300
``/recommend`` and 100 ``/score`` requests from 32 concurrent clients. Before
the service scored in-process, the internal hop to a second BentoML service
answered some of these with 500s.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kuberec.serving.processes import process_tree
from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

pytestmark = pytest.mark.slow

CONCURRENCY = 32


def _requests(n_recommend: int, n_score: int) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n_recommend):
        if i % 10 == 0:
            body: dict[str, Any] = {"user_id": f"cold-{i}", "k": 5}
        elif i % 10 == 1:
            body = {"user_id": f"cold-{i}", "k": 5, "recent_items": [50, "181"]}
        elif i % 10 == 2:
            body = {"user_id": 1 + i % 943, "k": 20, "filters": {"genres": ["Comedy"]}}
        else:
            body = {"user_id": 1 + i % 943, "k": 10}
        out.append(("/recommend", body))
    out += [
        ("/score", {"user_id": 1 + i, "item_ids": [1, 50, "nope", 181]}) for i in range(n_score)
    ]
    return out


async def _burst(url: str, requests: list[tuple[str, dict[str, Any]]]) -> list[int]:
    import httpx

    limits = httpx.Limits(max_connections=CONCURRENCY)
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def client_loop() -> None:
            while not queue.empty():
                path, body = queue.get_nowait()
                response = await client.post(path, json=body)
                statuses.append(response.status_code)

        await asyncio.gather(*(client_loop() for _ in range(CONCURRENCY)))
    return statuses


def test_a_burst_on_a_freshly_started_server_gets_no_server_errors(ease_t_run: Path) -> None:
    port = free_port()
    process = start_server(ease_t_run, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout=120, process=process)
        statuses = asyncio.run(_burst(url, _requests(300, 100)))  # at once, no warm-up
        statuses += asyncio.run(_burst(url, _requests(300, 0)))
    finally:
        stop_server(process)
    assert len(statuses) == 700
    assert [s for s in statuses if s >= 500] == []
    assert set(statuses) == {200}


@pytest.fixture
def server(ease_t_run: Path) -> Iterator[tuple[str, Any]]:
    port = free_port()
    process = start_server(ease_t_run, port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=120, process=process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop_server(process)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("hung", [False, True], ids=["term", "kill"])
def test_stop_server_leaves_no_process_of_the_tree(server: tuple[str, Any], hung: bool) -> None:
    """A hung arbiter (stopped: TERM stays pending) never stops its workers; KILL must."""
    _, process = server
    tree = process_tree(process.pid)
    assert len(tree) > 1  # the arbiter and at least one worker (in a session of its own)
    if hung:
        os.kill(process.pid, signal.SIGSTOP)
    stop_server(process, timeout=1.0 if hung else 15.0)
    assert [pid for pid in tree if _running(pid)] == []
