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
stop coming). The model runs in one dedicated thread (a :class:`ModelLane`
shared by the batchers), off the event loop, so HTTP parsing and JSON encoding
continue while a batch is scored (numpy and torch release the GIL). One
exception: a batch of one request, while the lane is idle and a lone request
has been costing at most ``inline_max_ms`` of CPU, is scored on the event loop
itself, since the two thread switches cost more than such a call (a lone
client, or a quiet moment under load). A batch that fails is retried one
request at a time, so one bad request fails alone.
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
INLINE_MAX_MS_ENV = "KUBEREC_INLINE_MAX_MS"
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_LATENCY_MS = 2.0
#: A lone request costing at most this much model CPU is scored on the event loop.
DEFAULT_INLINE_MAX_MS = 1.0

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class BatchSettings:
    """``max_batch_size`` requests per model call; ``max_latency_ms``: longest wait to fill one.

    ``inline_max_ms``: a lone request whose model call costs at most this much
    CPU is scored on the event loop, without the thread hop (0: never).
    """

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS
    inline_max_ms: float = DEFAULT_INLINE_MAX_MS

    @classmethod
    def from_env(cls) -> BatchSettings:
        size = _read(MAX_BATCH_SIZE_ENV, DEFAULT_MAX_BATCH_SIZE, int)
        latency = _read(MAX_LATENCY_MS_ENV, DEFAULT_MAX_LATENCY_MS, float)
        inline = _read(INLINE_MAX_MS_ENV, DEFAULT_INLINE_MAX_MS, float)
        if size < 1:
            raise ConfigError(f"{MAX_BATCH_SIZE_ENV}: must be >= 1, got {size}")
        for name, value in ((MAX_LATENCY_MS_ENV, latency), (INLINE_MAX_MS_ENV, inline)):
            if value < 0:
                raise ConfigError(f"{name}: must be >= 0, got {value}")
        return cls(int(size), float(latency), float(inline))


def _read(name: str, default: float, kind: type[int] | type[float]) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: must be a number, got {raw!r}") from None


class ModelLane:
    """The one thread the model runs in, shared by the batchers, and whether it is busy now.

    ``busy`` is only touched on the event loop, so it needs no lock.
    """

    def __init__(self, executor: Executor | None = None) -> None:
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="kuberec-model")
        self.busy = 0

    async def run(self, function: Callable[[], Out], *, inline: bool = False) -> Out:
        """``function()`` in the lane's thread; on the event loop when ``inline`` and idle."""
        if inline and self.busy == 0:
            return function()
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function)
        finally:
            self.busy -= 1


class MicroBatcher(Generic[In, Out]):
    """``await batcher.submit(x)`` -> ``function([..., x, ...])[i]``, batched with its neighbours.

    ``function`` takes a list of inputs and returns one output per input, in
    order. It runs in ``lane`` (share one between batchers so the model is
    called from one thread at a time; default: a lane of its own on
    ``executor``). ``on_batch`` hears each batch size (for metrics).
    """

    def __init__(
        self,
        function: Callable[[list[In]], Sequence[Out]],
        settings: BatchSettings | None = None,
        *,
        executor: Executor | None = None,
        lane: ModelLane | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.function = function
        self.settings = settings or BatchSettings()
        self._lane = lane or ModelLane(executor)
        self._on_batch = on_batch
        self._lone_cost: float | None = None  # CPU seconds of the last lone request's call
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
        inputs = [item for item, _ in batch]
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            outputs = await self._lane.run(
                lambda: self._checked(inputs), inline=self._inline(len(inputs))
            )
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], error=exc)
                return
            log.warning(
                "a batch of %d failed; answering its requests one by one", len(batch), exc_info=True
            )
            for item, future in batch:
                await self._call([(item, future)])
            return
        for (_, future), output in zip(batch, outputs, strict=True):
            _settle(future, output)

    def _inline(self, size: int) -> bool:
        """Score on the event loop: one request, known to be cheap (measured, never assumed)."""
        cost = self._lone_cost
        return size == 1 and cost is not None and cost * 1e3 <= self.settings.inline_max_ms

    def _checked(self, inputs: list[In]) -> Sequence[Out]:
        began = time.thread_time()  # CPU, not wall time: a busy machine does not inflate it
        outputs = self.function(inputs)
        if len(inputs) == 1:
            self._lone_cost = time.thread_time() - began
        if len(outputs) != len(inputs):
            raise RuntimeError(
                f"batch function returned {len(outputs)} results for {len(inputs)} inputs"
            )
        return outputs


def _settle(
    future: asyncio.Future[Out], output: Out | None = None, *, error: BaseException | None = None
) -> None:
    if future.done():  # the request was cancelled (client gone)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(output)  # type: ignore[arg-type]
