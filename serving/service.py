"""The BentoML service: ``bentoml serve kuberec.serving.service:Recommender``.

Two services, because BentoML batches only calls that arrive at a batchable API
over its dispatcher: the public :class:`Recommender` validates the JSON, maps
ids, explains and counts; it forwards the model work to :class:`Ranker`, whose
``rank`` and ``score`` APIs are batchable, so concurrent requests are scored in
one model call (BentoML's adaptive batching sizes the batches from the observed
latency). Both read the model named by ``$KUBEREC_MODEL`` (a run directory or a
BentoML tag; :func:`kuberec.serving.server.start_server` resolves artifact URIs
before launching).

``/healthz``, ``/livez``, ``/readyz`` and ``/metrics`` are BentoML's; readiness
waits for the model (``__is_ready__``) and for the ranker, and ``/metrics``
carries kuberec's metrics (see :mod:`.metrics`) next to BentoML's.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import ServiceUnavailable
from starlette.responses import JSONResponse

from kuberec.errors import ConfigError
from kuberec.serving import metrics
from kuberec.serving.engine import Engine, Query, Ranked, RequestError
from kuberec.serving.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    ItemScore,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
    SimilarItem,
    SimilarRequest,
    SimilarResponse,
)
from kuberec.serving.server import MODEL_ENV

log = logging.getLogger(__name__)

FEEDBACK_LOG_ENV = "KUBEREC_FEEDBACK_LOG"
MAX_BATCH_SIZE = int(os.environ.get("KUBEREC_MAX_BATCH_SIZE", "64"))
MAX_LATENCY_MS = int(os.environ.get("KUBEREC_MAX_LATENCY_MS", "1000"))


def model_reference() -> str:
    reference = os.environ.get(MODEL_ENV, "").strip()
    if not reference:
        raise ConfigError(f"${MODEL_ENV} is not set; set it to a run directory or a BentoML "
                          "model tag (or start the server with `kuberec serve`)")
    return reference


@bentoml.service(name="kuberec-ranker", workers=1, threads=1, traffic={"timeout": 60})
class Ranker:
    """The model behind batchable APIs; requests from :class:`Recommender` are batched."""

    def __init__(self) -> None:
        self.engine = Engine.load(model_reference())

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def rank(self, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ranked = self.engine.rank([Query.from_dict(q) for q in queries])
        return [r.to_dict() for r in ranked]

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def score(self, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pairs = [(Query.from_dict(q["query"]), _indices(q["items"])) for q in queries]
        return [{"scores": [float(s) for s in scores], "fallback": fallback}
                for scores, fallback in self.engine.score(pairs)]


@bentoml.service(name="kuberec", workers=1, traffic={"timeout": 60})
class Recommender:
    """The public JSON API: /recommend, /similar, /score, /feedback."""

    ranker = bentoml.depends(Ranker)

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._failure: str | None = None
        self._feedback_log = os.environ.get(FEEDBACK_LOG_ENV)
        self._lock = threading.Lock()
        # Load off the event loop so /healthz answers at once and /readyz tells the truth.
        threading.Thread(target=self._load, args=(model_reference(),), daemon=True).start()

    def _load(self, reference: str) -> None:
        try:
            engine = Engine.load(reference, with_index=False)
        except Exception as exc:  # reported by /readyz and every request
            log.exception("cannot load model %s", reference)
            self._failure = f"cannot load model {reference}: {exc}"
            return
        metrics.set_model_version(engine.version, engine.loaded.model_type)
        self._engine = engine

    async def _call_ranker(self, method: str, batch: list[dict[str, Any]]) -> list[Any]:
        """Call the ranker, retrying once when a pooled connection was closed under us.

        BentoML's internal client keeps connections alive longer than the ranker's
        server does (bentoml/BentoML#4971), so a reused connection can be gone.
        """
        import aiohttp

        client = self.ranker.to_async
        try:
            return await getattr(client, method)(batch)
        except aiohttp.ClientConnectionError:
            log.warning("connection to the ranker dropped; retrying once")
            return await getattr(client, method)(batch)

    def __is_ready__(self) -> bool:
        return self._engine is not None

    def _ready(self) -> Engine:
        if self._engine is None:
            raise ServiceUnavailable(self._failure or "the model is still loading")
        return self._engine

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, **fields: Any) -> RecommendResponse:
        """Top-K items for a user, explained; a popularity fallback for cold users."""
        engine = self._ready()
        request = RecommendRequest.model_construct(**fields)
        try:
            query = _query(engine, request.user_id, request.recent_items, request.k,
                           request.exclude_seen, request.filters and request.filters.genres)
        except RequestError as exc:
            return _unprocessable(exc)  # type: ignore[return-value]
        [answer] = await self._call_ranker("rank", [query.to_dict()])
        ranked = Ranked(_indices(answer["items"]), answer["scores"], answer["fallback"],
                        engine.history(query))
        if ranked.fallback:
            metrics.count_fallback("/recommend")
        reasons = engine.explain(ranked)
        items = [RecommendedItem(item_id=engine.item_id(i), score=float(s), explanation=why)
                 for i, s, why in zip(ranked.items, ranked.scores, reasons, strict=True)]
        return RecommendResponse(items=items, model_version=engine.version,
                                 request_id=_request_id(), fallback=ranked.fallback)

    @bentoml.api(route="/similar", input_spec=SimilarRequest)
    async def similar(self, **fields: Any) -> SimilarResponse:
        """Items most similar to an item (embedding or co-occurrence cosine)."""
        engine = self._ready()
        request = SimilarRequest.model_construct(**fields)
        found, _ = engine.items([request.item_id])
        if not len(found):
            return _unprocessable(RequestError(  # type: ignore[return-value]
                "item_id", f"unknown item {request.item_id!r}: it was not in the training data"))
        items, scores = engine.similar(int(found[0]), request.k)
        return SimilarResponse(
            items=[SimilarItem(item_id=engine.item_id(i), score=float(s))
                   for i, s in zip(items, scores, strict=True)],
            model_version=engine.version, request_id=_request_id(),
        )

    @bentoml.api(route="/score", input_spec=ScoreRequest)
    async def score(self, **fields: Any) -> ScoreResponse:
        """Scores of given items for a user; unknown item ids are listed, not fatal."""
        engine = self._ready()
        request = ScoreRequest.model_construct(**fields)
        query = Query(engine.user(request.user_id))
        items, unknown = engine.items(request.item_ids)
        known_ids = [i for i in request.item_ids if i not in unknown]
        scores: list[float] = []
        fallback = engine.is_fallback(query)
        if len(items):
            [answer] = await self._call_ranker(
                "score", [{"query": query.to_dict(), "items": items.tolist()}])
            scores, fallback = answer["scores"], answer["fallback"]
        if fallback:
            metrics.count_fallback("/score")
        return ScoreResponse(
            scores=[ItemScore(item_id=i, score=s) for i, s in zip(known_ids, scores, strict=True)],
            unknown_items=unknown, model_version=engine.version, request_id=_request_id(),
            fallback=fallback,
        )

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, **fields: Any) -> FeedbackResponse:
        """Impressions, clicks and purchases: counted by type (and logged when configured)."""
        engine = self._ready()
        request = FeedbackRequest.model_construct(**fields)
        metrics.count_feedback(request.event)
        if self._feedback_log:
            line = json.dumps({"request_id": request.request_id, "user_id": request.user_id,
                               "item_id": request.item_id, "event": request.event,
                               "model_version": engine.version})
            with self._lock, Path(self._feedback_log).open("a") as out:
                out.write(line + "\n")
        return FeedbackResponse(accepted=True, model_version=engine.version)


Recommender.add_asgi_middleware(metrics.RequestMetrics)  # type: ignore[attr-defined]


def _query(engine: Engine, user_id: object, recent_ids: list[Any] | None, k: int,
           exclude_seen: bool, genres: list[str] | None) -> Query:
    if genres is not None:
        engine.check_genres(genres)
    recent, _ = engine.items(recent_ids or [])  # unknown recent items carry no signal
    return Query(engine.user(user_id), tuple(int(i) for i in recent), k, exclude_seen,
                 None if genres is None else tuple(genres))


def _indices(values: list[Any]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=np.int64)


def _request_id() -> str:
    return str(uuid.uuid4())


def _unprocessable(error: RequestError) -> JSONResponse:
    """The same shape as a validation error: ``detail[].loc`` names the field."""
    return JSONResponse(status_code=422, content={
        "error": str(error),
        "detail": [{"loc": error.field.split("."), "msg": error.reason,
                    "type": "value_error"}],
    })
