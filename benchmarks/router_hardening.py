"""The canary router before and after hardening, side by side in one run, on loopback.

- Metric growth: ``/router/metrics`` size and series after N requests to
  unique made-up paths, for the router of an earlier commit (``--baseline``,
  read with ``git show``) and this one.
- Cost of the checks: p50 of ``/recommend`` through each router (the new one
  also parses bodies for depth and checks feedback ids).
- Refusing a huge body: time until a 200 MB declared body is answered.

    python benchmarks/router_hardening.py [--paths 3000] [--requests 500] [--baseline 6adc479]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchmark-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def serve(self, app: web.Application) -> str:
        port = _free_port()

        async def start() -> None:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10)
        return f"http://127.0.0.1:{port}"


def _backend() -> web.Application:
    async def recommend(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"items": [{"item_id": 1, "score": 1.0, "explanation": ""}],
                                  "model_version": "v1", "request_id": str(uuid.uuid4()),
                                  "fallback": False})  # fmt: skip

    app = web.Application()
    app.router.add_post("/recommend", recommend)
    return app


def _old_router_class(commit: str) -> Any:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:serving/canary/router.py"],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "old_router.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_router", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Router


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        return exc.read()


def _recommend_ms(url: str, n: int) -> float:
    times = []
    for user in range(n):
        request = urllib.request.Request(
            url + "/recommend",
            data=b'{"user_id": %d}' % user,
            headers={"Content-Type": "application/json"},
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _huge_body_s(url: str) -> float:
    host, port = url.removeprefix("http://").split(":")
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(
            f"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {200 * 1024 * 1024}\r\n\r\n".encode()
        )
        chunk = b" " * (1024 * 1024)
        conn.settimeout(0.0)
        answer = b""
        for _ in range(200):  # keep sending until answered, as a client would
            with contextlib.suppress(BlockingIOError):
                answer += conn.recv(4096)
            if answer:
                break
            try:
                conn.settimeout(5)
                conn.sendall(chunk)
                conn.settimeout(0.0)
            except OSError:
                break
        conn.settimeout(60)
        while not answer:
            answer = conn.recv(4096)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paths", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--baseline", default="6adc479")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from kuberec.serving.canary.router import Router

    loop = _Loop()
    stable = loop.serve(_backend())
    routers = {
        f"before ({args.baseline})": loop.serve(_old_router_class(args.baseline)(stable).app()),
        "after": loop.serve(Router(stable, token=TOKEN).app()),
    }
    print(
        f"| router | /recommend p50 ms | /router/metrics bytes | after {args.paths} unique "
        "paths | series | 200 MB body answered in s |"
    )
    print("|---|---|---|---|---|---|")
    p50s: dict[str, list[float]] = {name: [] for name in routers}
    for _ in range(10):  # interleaved rounds: the machine is shared, its load changes
        for name, url in routers.items():
            p50s[name].append(_recommend_ms(url, args.requests // 10))
    for name, url in routers.items():
        before = len(_get(url + "/router/metrics"))
        p50 = statistics.median(p50s[name])
        for n in range(args.paths):
            _get(f"{url}/made-up-{n}")
        text = _get(url + "/router/metrics").decode()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        huge = _huge_body_s(url)
        print(f"| {name} | {p50:.2f} | {before:,} | {len(text):,} | {series:,} | {huge:.2f} |")


if __name__ == "__main__":
    main()
