"""Adaptive micro-batching inside the serving process: concurrent requests, one model call.

BentoML batches only calls that reach a ``batchable`` API through its HTTP
dispatcher, so using it meant a second service and an HTTP hop per request
(whose pooled connections reset under bursts, bentoml/BentoML#4971). Here the
requests of one process meet in an asyncio queue instead:

- the model is idle and a request arrives: it is scored at once, unless recent
  batches held several requests (the server is under concurrent load), in which
  case the batch waits up to ``max_latency_ms`` for as many requests as the
  last batch held;
- the model is busy: arrivals queue, and the next batch takes up to
  ``max_batch_size`` of them.

So a lone client never waits, and under load the batch size follows the load
(it grows while requests pile up during a model call and shrinks when they
stop coming). The model runs in one dedicated thread, off the event loop, so
HTTP parsing and JSON encoding continue while a batch is scored (numpy and
torch release the GIL). A batch that fails is retried one request at a time,
so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from kuberec.errors import ConfigError

log = logging.getLogger(__name__)

MAX_BATCH_SIZE_ENV = "KUBEREC_MAX_BATCH_SIZE"
MAX_LATENCY_MS_ENV = "KUBEREC_MAX_LATENCY_MS"
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_LATENCY_MS = 2.0

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class BatchSettings:
    """``max_batch_size`` requests per model call; ``max_latency_ms``: longest wait to fill one."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS

    @classmethod
    def from_env(cls) -> BatchSettings:
        size = _read(MAX_BATCH_SIZE_ENV, DEFAULT_MAX_BATCH_SIZE, int)
        latency = _read(MAX_LATENCY_MS_ENV, DEFAULT_MAX_LATENCY_MS, float)
        if size < 1:
            raise ConfigError(f"{MAX_BATCH_SIZE_ENV}: must be >= 1, got {size}")
        if latency < 0:
            raise ConfigError(f"{MAX_LATENCY_MS_ENV}: must be >= 0, got {latency}")
        return cls(int(size), float(latency))


def _read(name: str, default: float, kind: type[int] | type[float]) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: must be a number, got {raw!r}") from None


class MicroBatcher(Generic[In, Out]):
    """``await batcher.submit(x)`` -> ``function([..., x, ...])[i]``, batched with its neighbours.

    ``function`` takes a list of inputs and returns one output per input, in
    order. It runs on ``executor`` (share one between batchers so the model is
    called from one thread). ``on_batch`` hears each batch size (for metrics).
    """

    def __init__(
        self,
        function: Callable[[list[In]], Sequence[Out]],
        settings: BatchSettings | None = None,
        *,
        executor: Executor | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.function = function
        self.settings = settings or BatchSettings()
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="kuberec-batch")
        self._on_batch = on_batch
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._expected = 1  # size of the last batch: what to wait for under load

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._queue.append((item, future))
        if self._runner is None or self._runner.done():
            self._wake = asyncio.Event()
            self._runner = loop.create_task(self._run())
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _run(self) -> None:
        """One batch at a time, for as long as requests keep arriving."""
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            await self._fill()
            size = min(len(self._queue), self.settings.max_batch_size)
            batch, self._queue = self._queue[:size], self._queue[size:]
            self._expected = len(batch)
            await self._call(batch)

    async def _fill(self) -> None:
        """Under load, give the batch up to ``max_latency_ms`` to reach the last batch's size."""
        target = min(self._expected, self.settings.max_batch_size)
        if target <= 1 or len(self._queue) >= target or self.settings.max_latency_ms <= 0:
            return
        deadline = time.perf_counter() + self.settings.max_latency_ms / 1e3
        assert self._wake is not None
        while len(self._queue) < target:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _call(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        loop = asyncio.get_running_loop()
        inputs = [item for item, _ in batch]
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            outputs = await loop.run_in_executor(self._executor, self._checked, inputs)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], error=exc)
                return
            log.warning("a batch of %d failed; answering its requests one by one", len(batch),
                        exc_info=True)
            for item, future in batch:
                await self._call([(item, future)])
            return
        for (_, future), output in zip(batch, outputs, strict=True):
            _settle(future, output)

    def _checked(self, inputs: list[In]) -> Sequence[Out]:
        outputs = self.function(inputs)
        if len(outputs) != len(inputs):
            raise RuntimeError(f"batch function returned {len(outputs)} results for "
                               f"{len(inputs)} inputs")
        return outputs


def _settle(future: asyncio.Future[Out], output: Out | None = None, *,
            error: BaseException | None = None) -> None:
    if future.done():  # the request was cancelled (client gone)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(output)  # type: ignore[arg-type]
