"""The in-process adaptive micro-batcher: concurrent requests share a call, a lone one waits not."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kuberec.errors import ConfigError
from kuberec.serving.batching import (
    INLINE_MAX_MS_ENV,
    MAX_BATCH_SIZE_ENV,
    MAX_LATENCY_MS_ENV,
    BatchSettings,
    MicroBatcher,
    ModelLane,
)


class Doubler:
    """A slow batch function that records the batches it was given."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        if any(i < 0 for i in items):
            raise ValueError("negative")
        time.sleep(self.seconds)
        return [2 * i for i in items]


def test_concurrent_requests_are_answered_in_batches_each_with_its_own_result() -> None:
    doubler = Doubler()
    batcher = MicroBatcher(doubler, BatchSettings(max_batch_size=16, max_latency_ms=5))

    async def main() -> list[int]:
        return await asyncio.gather(*(batcher.submit(i) for i in range(50)))

    assert asyncio.run(main()) == [2 * i for i in range(50)]
    assert max(len(b) for b in doubler.batches) == 16
    assert len(doubler.batches) < 10
    assert threading.get_ident() not in doubler.threads  # the model runs off the event loop


def test_a_lone_request_is_answered_without_waiting_for_company() -> None:
    doubler = Doubler(seconds=0)
    batcher = MicroBatcher(doubler, BatchSettings(max_batch_size=64, max_latency_ms=500))

    async def main() -> float:
        began = time.perf_counter()
        for i in range(5):
            assert await batcher.submit(i) == 2 * i
        return time.perf_counter() - began

    assert asyncio.run(main()) < 0.4  # five sequential requests, no 500 ms wait
    assert [len(b) for b in doubler.batches] == [1] * 5


def _burn(seconds: float) -> None:
    """Spend CPU (not sleep: the batcher measures a call's CPU, not its wall time)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_cheap_lone_request_is_scored_on_the_event_loop_once_measured_cheap() -> None:
    doubler = Doubler(seconds=0)
    batcher = MicroBatcher(doubler, BatchSettings(inline_max_ms=50))

    async def main() -> tuple[list[int], int]:
        return [await batcher.submit(i) for i in range(4)], threading.get_ident()

    answers, loop_thread = asyncio.run(main())
    assert answers == [0, 2, 4, 6]
    assert len(doubler.threads) == 2  # the first call, unmeasured, ran in the model thread
    assert loop_thread in doubler.threads


def test_a_costly_lone_request_stays_off_the_event_loop() -> None:
    threads: set[int] = set()

    def costly(items: list[int]) -> list[int]:
        threads.add(threading.get_ident())
        _burn(0.005)
        return items

    batcher = MicroBatcher(costly, BatchSettings(inline_max_ms=1))

    async def main() -> int:
        for i in range(3):
            assert await batcher.submit(i) == i
        return threading.get_ident()

    assert asyncio.run(main()) not in threads


def test_inline_max_ms_zero_keeps_every_call_off_the_event_loop() -> None:
    doubler = Doubler(seconds=0)
    batcher = MicroBatcher(doubler, BatchSettings(inline_max_ms=0))

    async def main() -> int:
        for i in range(3):
            assert await batcher.submit(i) == 2 * i
        return threading.get_ident()

    assert asyncio.run(main()) not in doubler.threads


def test_a_lone_request_is_not_inlined_while_the_shared_lane_is_busy() -> None:
    """Two batchers on one lane: the model never runs in two threads at once."""
    lane = ModelLane()
    running = threading.Semaphore(1)
    overlaps: list[int] = []

    def exclusive(items: list[int]) -> list[int]:
        if not running.acquire(blocking=False):
            overlaps.append(len(items))
            return items
        try:
            time.sleep(0.005)  # no CPU: still measured cheap enough to run inline
            return items
        finally:
            running.release()

    settings = BatchSettings(inline_max_ms=50)
    first = MicroBatcher(exclusive, settings, lane=lane)
    second = MicroBatcher(exclusive, settings, lane=lane)

    async def main() -> None:
        await first.submit(0)
        await second.submit(0)  # both measured cheap: lone calls may now run inline
        for _ in range(5):
            await asyncio.gather(*(first.submit(i) for i in range(4)), second.submit(9))

    asyncio.run(main())
    assert overlaps == []


def test_a_failing_request_fails_alone() -> None:
    doubler = Doubler(seconds=0.01)
    batcher = MicroBatcher(doubler, BatchSettings(max_batch_size=8, max_latency_ms=5))

    async def main() -> list[object]:
        return await asyncio.gather(
            *(batcher.submit(i) for i in (1, -1, 2, 3)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert results[0] == 2 and results[2] == 4 and results[3] == 6
    assert isinstance(results[1], ValueError)


def test_settings_come_from_the_environment_and_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MAX_BATCH_SIZE_ENV, "8")
    monkeypatch.setenv(MAX_LATENCY_MS_ENV, "3.5")
    assert BatchSettings.from_env() == BatchSettings(8, 3.5)
    monkeypatch.setenv(INLINE_MAX_MS_ENV, "-1")
    with pytest.raises(ConfigError, match=INLINE_MAX_MS_ENV):
        BatchSettings.from_env()
    monkeypatch.setenv(INLINE_MAX_MS_ENV, "0.5")
    assert BatchSettings.from_env() == BatchSettings(8, 3.5, 0.5)
    monkeypatch.setenv(MAX_BATCH_SIZE_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_BATCH_SIZE_ENV):
        BatchSettings.from_env()
    monkeypatch.setenv(MAX_BATCH_SIZE_ENV, "0")
    with pytest.raises(ConfigError, match=MAX_BATCH_SIZE_ENV):
        BatchSettings.from_env()
