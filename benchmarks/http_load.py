"""A cheap closed-loop HTTP load generator for the serving benchmarks (loopback only).

The load generator shares the machine with the servers, so it is kept cheap:
raw keep-alive HTTP/1.1 on asyncio streams, ~0.05 ms of CPU per request (an
HTTP client library spent ~3 ms of CPU per request at concurrency 32, more
than the servers it measured, which capped every server at the client's
speed and hid their differences).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for JSON POSTs."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if headers.get("transfer-encoding", "").lower() == "chunked":
            payload = b""
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
                payload += await self._reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            payload = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def closed_loop(
    url: str, bodies: Sequence[bytes], concurrency: int, seconds: float, path: str = "/recommend"
) -> dict[str, float]:
    """``concurrency`` clients, each sending its next request when the last one answers.

    Client ``j`` sends ``bodies[j], bodies[j + concurrency], ...`` in turn.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    connections = [Connection(host, int(port)) for _ in range(concurrency)]
    await connections[0].post(path, bodies[0])  # warm-up, not measured
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop:
            start = time.perf_counter()
            status, _ = await connections[offset].post(path, bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - start)
            errors += status != 200
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(worker(j) for j in range(concurrency)))
    elapsed = time.perf_counter() - began
    for connection in connections:
        connection.close()
    ms = np.asarray(latencies) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "rps": len(ms) / elapsed,
        "errors": errors,
        "requests": len(ms),
    }
