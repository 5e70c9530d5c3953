"""Replay held-out interactions as live traffic: the online signal a canary is judged on.

Each request is one visit of a user from the held-out file (users in the order
of their first held-out interaction, cycling when ``limit`` asks for more
visits than there are users), sent as ``POST /recommend`` at a fixed rate.
What the user "does" with the answer comes from the held-out file: an item
the user really took is clicked. With ``impressions="item"`` every shown item
is an ``impression`` and every such hit a ``click`` (click-through =
precision@K); with ``"list"`` each answer is one impression (its top item)
and at most one click (click-through = hit rate@K), a tenth of the feedback
traffic. Feedback carries the answer's ``request_id``, so a router credits it
to the version that served the list. ``synthetic`` traffic (the canary
analysis's) is served and counted but never becomes features or training data.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pandas as pd

from kuberec.errors import ConfigError, DataError
from kuberec.serving.feedback_settings import SYNTHETIC, TRAFFIC_HEADER

ImpressionMode = Literal["item", "list"]


@dataclass
class VersionTally:
    requests: int = 0
    errors: int = 0
    impressions: int = 0
    clicks: int = 0
    latency_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def click_through(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.latency_ms)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else None
        data = {k: v for k, v in asdict(self).items() if k != "latency_ms"}
        return {**data, "click_through": self.click_through,
                "latency_p95_ms": None if p95 is None else round(p95, 2)}  # fmt: skip


@dataclass
class ReplayReport:
    """What was sent and seen, overall and per ``model_version`` of the answers."""

    requests: int = 0
    errors: int = 0
    #: failed feedback posts by cause: the HTTP status, or the client error's class name
    feedback_failures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    by_version: dict[str, VersionTally] = field(default_factory=dict)

    @property
    def feedback_errors(self) -> int:
        return sum(self.feedback_failures.values())

    @property
    def impressions(self) -> int:
        return sum(t.impressions for t in self.by_version.values())

    @property
    def clicks(self) -> int:
        return sum(t.clicks for t in self.by_version.values())

    def tally(self, version: str) -> VersionTally:
        return self.by_version.setdefault(version, VersionTally())

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "feedback_errors": self.feedback_errors,
            "feedback_failures": dict(sorted(self.feedback_failures.items())),
            "impressions": self.impressions,
            "clicks": self.clicks,
            "click_through": round(self.clicks / self.impressions, 4) if self.impressions else None,
            "rate": round(self.requests / self.seconds, 2) if self.seconds else None,
            "seconds": round(self.seconds, 2),
            "by_version": {v: t.to_dict() for v, t in sorted(self.by_version.items())},
        }


def read_held_out(path: Path) -> pd.DataFrame:
    """A CSV/Parquet file with ``user_id,item_id[,timestamp]``, ids as the file gives them."""
    from kuberec.components.datasets.generic import keep_ids
    from kuberec.components.datasets.parsing import read_table, require_columns

    frame = read_table(path)
    require_columns(frame, ["user_id", "item_id"], path)
    columns = ["user_id", "item_id"] + (["timestamp"] if "timestamp" in frame.columns else [])
    frame = frame[columns].copy()
    frame["user_id"] = keep_ids(frame["user_id"])
    frame["item_id"] = keep_ids(frame["item_id"])
    return frame


def visits(held_out: pd.DataFrame, limit: int | None = None) -> list[object]:
    """The user of each request: users by first held-out interaction, cycled up to ``limit``."""
    if held_out.empty:
        raise DataError("the held-out interactions are empty; nothing to replay")
    frame = held_out
    if "timestamp" in frame.columns:
        frame = frame.sort_values("timestamp", kind="stable")
    users = [_plain(u) for u in pd.unique(frame["user_id"])]
    if limit is None:
        return users
    return [users[i % len(users)] for i in range(limit)]


def truth(held_out: pd.DataFrame) -> dict[str, set[str]]:
    """Per user (as text), the held-out items (as text): ``1`` and ``"1"`` are one id."""
    grouped = held_out.groupby(held_out["user_id"].astype(str))["item_id"]
    return {user: set(items.astype(str)) for user, items in grouped}


def replay(
    url: str,
    held_out: pd.DataFrame,
    *,
    rate: float,
    k: int = 10,
    limit: int | None = None,
    impressions: ImpressionMode = "item",
    stop: threading.Event | None = None,
    timeout_s: float = 30.0,
    report: ReplayReport | None = None,
    synthetic: bool = False,
) -> ReplayReport:
    """Send the visits at ``rate`` requests/s to ``url`` and their feedback; blocks until done.

    ``synthetic`` marks every request (``X-Kuberec-Traffic: synthetic``): the
    servers answer and count it but neither push nor store its feedback. The
    canary analysis's own traffic is marked; traffic a user replays on purpose
    (held-out clicks meant to become features and training data) is not.

    ``stop`` (set from another thread) ends the replay early; with ``limit`` None
    and a ``stop`` event the visits cycle until it is set (background traffic).
    ``report``, when given, is filled as the replay goes (to watch it live).
    """
    if rate <= 0:
        raise ConfigError(f"--rate must be > 0 requests per second, got {rate}")
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    if impressions not in ("item", "list"):
        raise ConfigError(f"impressions must be 'item' or 'list', got {impressions!r}")
    users = visits(held_out, limit)
    if limit is None and stop is not None:
        users = _cycle(users)  # type: ignore[assignment]
    player = _Player(
        url.rstrip("/"),
        truth(held_out),
        k,
        impressions,
        timeout_s,
        report,
        {TRAFFIC_HEADER: SYNTHETIC} if synthetic else {},
    )
    return asyncio.run(player.run(users, rate, stop))


class _Player:
    def __init__(
        self,
        url: str,
        truth: dict[str, set[str]],
        k: int,
        mode: ImpressionMode,
        timeout_s: float,
        report: ReplayReport | None,
        headers: dict[str, str],
    ) -> None:
        self.url, self.truth, self.k, self.mode = url, truth, k, mode
        self.headers = headers
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.report = report if report is not None else ReplayReport()

    async def run(
        self, users: Iterable[object], rate: float, stop: threading.Event | None
    ) -> ReplayReport:
        started = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(
            timeout=self.timeout, connector=connector, headers=self.headers
        ) as session:
            for i, user in enumerate(users):
                if stop is not None and stop.is_set():
                    break
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._visit(session, user))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        self.report.seconds = time.perf_counter() - started
        return self.report

    async def _visit(self, session: aiohttp.ClientSession, user: object) -> None:
        report = self.report
        report.requests += 1
        sent = time.perf_counter()
        try:
            async with session.post(
                self.url + "/recommend", json={"user_id": user, "k": self.k}
            ) as response:
                body = await response.json(content_type=None) if response.status == 200 else None
                track = response.headers.get("X-Kuberec-Track")
        except (aiohttp.ClientError, TimeoutError, ValueError):
            body, track = None, None
        latency_ms = (time.perf_counter() - sent) * 1000.0
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            report.errors += 1
            tally = report.tally(f"error:{track or 'unknown'}")
            tally.requests += 1
            tally.errors += 1
            return
        tally = report.tally(str(body.get("model_version", "unknown")))
        tally.requests += 1
        tally.latency_ms.append(latency_ms)
        # One after the other, in the order a user makes them: a version's feedback that lags
        # (a busy server, a queue) is then cut at an interval's end with its clicks in the
        # proportion they had, where a burst sent all at once had the clicks last in line and
        # a lagging version's click-through measured low.
        for event in self._events(user, body):
            if await self._feedback(session, event):
                if event["event"] == "impression":
                    tally.impressions += 1
                elif event["event"] == "click":
                    tally.clicks += 1

    def _events(self, user: object, body: dict[str, Any]) -> list[dict[str, Any]]:
        items = [i.get("item_id") if isinstance(i, dict) else i for i in body["items"]]
        if not items:
            return []
        taken = self.truth.get(str(user), set())
        base = {"request_id": str(body.get("request_id", "")), "user_id": user}
        if self.mode == "list":  # one impression per answer, one click if any item was a hit
            hits = [item for item in items if str(item) in taken]
            shown = [(items[0], hits[0] if hits else None)]
        else:  # each click right after its item's impression
            shown = [(item, item if str(item) in taken else None) for item in items]
        events: list[dict[str, Any]] = []
        for item, clicked in shown:
            events.append({**base, "item_id": item, "event": "impression"})
            if clicked is not None:
                events.append({**base, "item_id": clicked, "event": "click"})
        return events

    async def _feedback(self, session: aiohttp.ClientSession, event: dict[str, Any]) -> bool:
        try:
            async with session.post(self.url + "/feedback", json=event) as response:
                await response.read()
                cause = str(response.status) if response.status >= 400 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            cause = type(exc).__name__
        if cause is not None:
            failures = self.report.feedback_failures
            failures[cause] = failures.get(cause, 0) + 1
        return cause is None


def _cycle(users: list[object]) -> Iterable[object]:
    while True:
        yield from users


def _plain(value: object) -> object:
    """numpy scalars as JSON-able ints and strings."""
    return value.item() if hasattr(value, "item") else value
