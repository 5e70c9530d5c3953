"""The BentoML service: ``bentoml serve kuberec.serving.service:Recommender``.

One service, one process: :class:`Recommender` validates the JSON, maps ids,
and hands the model work of ``/recommend`` and ``/score`` to an in-process
adaptive micro-batcher (:mod:`.batching`), so concurrent requests are scored
in one model call without leaving the process. (BentoML's own batching works
only for calls that reach a ``batchable`` API over HTTP, which took a second
service and a hop whose pooled connections reset under bursts,
bentoml/BentoML#4971, and cost more than batching saved on small catalogues.)
``KUBEREC_MAX_BATCH_SIZE`` and ``KUBEREC_MAX_LATENCY_MS`` tune it. Once the
model is loaded, JSON ``POST`` s to ``/recommend`` and ``/score`` are answered
by :mod:`.hot_routes` ahead of BentoML's per-request middlewares (the same
validation, handler and metrics; BentoML's own path cost ~6x a bare ASGI request). The model is
the one named by ``$KUBEREC_MODEL`` (a run directory or a BentoML tag;
:func:`kuberec.serving.server.start_server` resolves artifact URIs before
launching); ``$KUBEREC_RANKING`` (JSON of the job's ``spec.serving.ranking``)
is the re-ranking every request gets unless it overrides fields.

``/healthz``, ``/livez``, ``/readyz`` and ``/metrics`` are BentoML's; readiness
waits for the model (``__is_ready__``), and ``/metrics`` carries kuberec's
metrics (see :mod:`.metrics`) next to BentoML's. Bodies over
:data:`~.limits.MAX_BODY_BYTES` are refused with 413 before they are read;
client errors are logged as one line (:mod:`.bentoml_fixes`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pydantic_core
from bentoml.exceptions import ServiceUnavailable
from pydantic import BaseModel
from starlette.responses import Response

from kuberec.api.spec import RankingSpec
from kuberec.components.models.ranking import parse_ranking
from kuberec.errors import ConfigError
from kuberec.serving import bentoml_fixes, metrics
from kuberec.serving.batching import BatchSettings, MicroBatcher, ModelLane
from kuberec.serving.cold_items import similar_refusal
from kuberec.serving.engine import Engine, Query, Ranked, RequestError
from kuberec.serving.feedback_loop import FeedbackLoop, Rejected
from kuberec.serving.feedback_settings import SYNTHETIC, TRAFFIC_HEADER
from kuberec.serving.hot_routes import HotRoutes, bind
from kuberec.serving.limits import BodyLimit
from kuberec.serving.online_features import OnlineHistory
from kuberec.serving.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
    SimilarItem,
    SimilarRequest,
    SimilarResponse,
)
from kuberec.serving.server import MODEL_ENV, RANKING_ENV

log = logging.getLogger(__name__)

FEEDBACK_LOG_ENV = "KUBEREC_FEEDBACK_LOG"
#: ``1``: one access-log line per request (off: it cost ~10% of a request's CPU).
ACCESS_LOG_ENV = "KUBEREC_ACCESS_LOG"
#: ``1``: OpenTelemetry spans for the JSON endpoints. Off by default: BentoML's
#: sample rate defaults to 0, so the four spans per request were never exported,
#: yet creating them took about half of a request's CPU. Prometheus metrics
#: (:mod:`.metrics`) count every request either way.
TRACING_ENV = "KUBEREC_TRACING"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def job_ranking() -> RankingSpec | None:
    """The job's re-ranking from ``$KUBEREC_RANKING``; a bad one names the field."""
    text = os.environ.get(RANKING_ENV, "").strip()
    if not text:
        return None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"${RANKING_ENV} is not JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f'${RANKING_ENV} must be a JSON object like {{"diversity": 0.2}}')
    return parse_ranking(values, f"${RANKING_ENV}")


def model_reference() -> str:
    reference = os.environ.get(MODEL_ENV, "").strip()
    if not reference:
        raise ConfigError(
            f"${MODEL_ENV} is not set; set it to a run directory or a BentoML "
            "model tag (or start the server with `kuberec serve`)"
        )
    return reference


#: Seconds a request may take before it is answered 504 (BentoML's and the hot routes').
TIMEOUT_S = 60


@bentoml.service(
    name="kuberec",
    workers=1,
    traffic={"timeout": TIMEOUT_S},
    logging={"access": {"enabled": _flag(ACCESS_LOG_ENV)}},
    tracing={"excluded_urls": [] if _flag(TRACING_ENV) else list(metrics.ENDPOINTS)},
)
class Recommender:
    """The public JSON API: /recommend, /similar, /score, /feedback."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._failure: str | None = None
        self._feedback_log = os.environ.get(FEEDBACK_LOG_ENV)
        self._online = OnlineHistory.from_env()  # fresher histories than the model's, if set
        self._loop = FeedbackLoop.from_env()  # feedback -> Feast push + Parquet sink, if set
        self._lock = threading.Lock()
        settings = BatchSettings.from_env()
        lane = ModelLane()  # one model thread for both endpoints
        self._ranker: MicroBatcher[Query, tuple[Ranked, list[str]]] = MicroBatcher(
            lambda queries: self._ready().recommend(queries),
            settings,
            lane=lane,
            on_batch=lambda n: metrics.observe_batch("/recommend", n),
        )
        self._scorer: MicroBatcher[tuple[Query, np.ndarray], tuple[np.ndarray, bool]] = (
            MicroBatcher(
                lambda pairs: self._ready().score(pairs),
                settings,
                lane=lane,
                on_batch=lambda n: metrics.observe_batch("/score", n),
            )
        )
        # Load off the event loop so /healthz answers at once and /readyz tells the truth.
        threading.Thread(
            target=self._load, args=(model_reference(), job_ranking()), daemon=True
        ).start()
        bind(self)

    def _load(self, reference: str, ranking: RankingSpec | None) -> None:
        try:
            engine = Engine.load(reference, ranking=ranking)
        except Exception as exc:  # reported by /readyz and every request
            log.exception("cannot load model %s", reference)
            self._failure = f"cannot load model {reference}: {exc}"
            return
        metrics.set_model_version(engine.version, engine.loaded.model_type)
        # Everything allocated so far (libraries, the model) lives as long as the process:
        # out of the collector's sight, a full collection no longer stalls requests for
        # ~200 ms rescanning it (p99 at concurrency 32 fell from ~250 ms to ~30 ms).
        gc.collect()
        gc.freeze()
        self._engine = engine

    def __is_ready__(self) -> bool:
        return self._engine is not None

    def _ready(self) -> Engine:
        if self._engine is None:
            raise ServiceUnavailable(self._failure or "the model is still loading")
        return self._engine

    def ready(self) -> bool:
        return self._engine is not None

    async def answer(
        self, route: str, request: BaseModel, synthetic: bool = False
    ) -> tuple[int, bytes]:
        """A hot route's status and JSON body, whichever path the request came by
        (:mod:`.hot_routes` ahead of BentoML's middlewares, or the ``@bentoml.api`` method).

        ``synthetic``: canary analysis traffic (:data:`~.feedback_settings.TRAFFIC_HEADER`),
        whose impressions are never kept."""
        if route == "/recommend":
            assert isinstance(request, RecommendRequest)
            return await self._recommend(request, synthetic)
        assert isinstance(request, ScoreRequest)
        return await self._score(request)

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, ctx: bentoml.Context, **fields: Any) -> RecommendResponse:
        """Top-K items for a user, explained; a popularity fallback for cold users."""
        self._ready()
        status, body = await self._recommend(
            RecommendRequest.model_construct(**fields), _synthetic(ctx)
        )
        ctx.response.status_code = status  # BentoML sets a ctx handler's status from ctx
        return _response(status, body)

    async def _recommend(self, request: RecommendRequest, synthetic: bool) -> tuple[int, bytes]:
        engine = self._ready()
        recent = request.recent_items
        if not recent and self._online is not None:
            found = await asyncio.to_thread(self._online.recent_items, [request.user_id])
            recent = found.get(str(request.user_id))
        try:
            query = _query(
                engine,
                request.user_id,
                recent,
                request.k,
                request.exclude_seen,
                request.filters and request.filters.genres,
            )
            if request.ranking is not None:
                query = replace(query, ranking=engine.ranking_for(request.ranking))
        except RequestError as exc:
            return _unprocessable(exc)
        ranked, reasons = await self._ranker.submit(query)
        if ranked.fallback:
            metrics.count_fallback("/recommend")
        ids = engine.plain_ids
        shown = [ids[i] for i in ranked.items.tolist()]
        request_id = _request_id()
        if self._loop is not None:
            self._loop.served(
                request_id, request.user_id, shown, engine.version, synthetic=synthetic
            )
        return 200, _json(
            {  # RecommendResponse, as plain values (test_serving_http validates it)
                "items": [
                    {"item_id": item, "score": s, "explanation": why}
                    for item, s, why in zip(shown, ranked.scores.tolist(), reasons, strict=True)
                ],
                "model_version": engine.version,
                "request_id": request_id,
                "fallback": ranked.fallback,
            }
        )

    @bentoml.api(route="/similar", input_spec=SimilarRequest)
    async def similar(self, **fields: Any) -> SimilarResponse:
        """Items most similar to an item (embedding or co-occurrence cosine)."""
        engine = self._ready()
        request = SimilarRequest.model_construct(**fields)
        refusal = similar_refusal(engine, request.item_id)
        if refusal is not None:
            return _response(*_unprocessable(RequestError("item_id", refusal)))
        found, _ = engine.items([request.item_id])
        items, scores = engine.similar(int(found[0]), request.k)
        return _rendered(
            SimilarResponse(
                items=[
                    SimilarItem(item_id=engine.item_id(i), score=float(s))
                    for i, s in zip(items, scores, strict=True)
                ],
                model_version=engine.version,
                request_id=_request_id(),
            )
        )

    @bentoml.api(route="/score", input_spec=ScoreRequest)
    async def score(self, **fields: Any) -> ScoreResponse:
        """Scores of given items for a user; unknown item ids are listed, not fatal."""
        self._ready()
        status, body = await self._score(ScoreRequest.model_construct(**fields))
        return _response(status, body)

    async def _score(self, request: ScoreRequest) -> tuple[int, bytes]:
        engine = self._ready()
        query = Query(engine.user(request.user_id))
        items, unknown = engine.items(request.item_ids)
        known_ids = [i for i in request.item_ids if i not in unknown]
        scores: list[float] = []
        fallback = engine.is_fallback(query)
        if len(items):
            found, fallback = await self._scorer.submit((query, items))
            scores = found.tolist()
        if fallback:
            metrics.count_fallback("/score")
        return 200, _json(
            {  # ScoreResponse, as plain values (test_serving_http validates it)
                "scores": [
                    {"item_id": i, "score": s} for i, s in zip(known_ids, scores, strict=True)
                ],
                "unknown_items": unknown,
                "model_version": engine.version,
                "request_id": _request_id(),
                "fallback": fallback,
            }
        )

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, ctx: bentoml.Context, **fields: Any) -> FeedbackResponse:
        """Impressions, clicks and purchases: counted by type, pushed to Feast and stored
        when configured (:mod:`.feedback_loop` has the rule for unknown ids)."""
        engine = self._ready()
        request = FeedbackRequest.model_construct(**fields)
        if self._loop is not None:
            try:
                self._loop.accept(
                    request.request_id,
                    request.user_id,
                    request.item_id,
                    request.event,
                    engine.version,
                    known_user=engine.user(request.user_id) >= 0,
                    known_item=len(engine.items([request.item_id])[0]) > 0,
                    synthetic=_synthetic(ctx),
                )
            except Rejected as exc:
                ctx.response.status_code = 422  # BentoML sets a ctx handler's status from ctx
                return _response(*_unprocessable(RequestError(exc.field, exc.reason)))
        metrics.count_feedback(request.event)
        if self._feedback_log:
            line = json.dumps(
                {
                    "request_id": request.request_id,
                    "user_id": request.user_id,
                    "item_id": request.item_id,
                    "event": request.event,
                    "model_version": engine.version,
                }
            )
            with self._lock, Path(self._feedback_log).open("a") as out:
                out.write(line + "\n")
        return FeedbackResponse(accepted=True, model_version=engine.version)

    @bentoml.on_shutdown
    def _flush_feedback(self) -> None:
        """What is queued reaches the store and the sink before the process exits."""
        if self._loop is not None:
            self._loop.close()


Recommender.add_asgi_middleware(  # type: ignore[attr-defined]  # first in the stack: see .hot_routes
    HotRoutes, routes={"/recommend": RecommendRequest, "/score": ScoreRequest}, timeout_s=TIMEOUT_S
)
Recommender.add_asgi_middleware(metrics.RequestMetrics)  # type: ignore[attr-defined]
Recommender.add_asgi_middleware(BodyLimit)  # type: ignore[attr-defined]  # inside: 413s counted
bentoml_fixes.apply()


def _synthetic(ctx: bentoml.Context) -> bool:
    """Canary analysis traffic (:data:`~.feedback_settings.TRAFFIC_HEADER`): never kept."""
    return ctx.request.headers.get(TRAFFIC_HEADER, "").strip().lower() == SYNTHETIC


def _query(
    engine: Engine,
    user_id: object,
    recent_ids: list[Any] | None,
    k: int,
    exclude_seen: bool,
    genres: list[str] | None,
) -> Query:
    if genres is not None:
        engine.check_genres(genres)
    recent: tuple[int, ...] = ()
    if recent_ids:
        known, _ = engine.items(recent_ids)  # unknown recent items carry no signal
        recent = tuple(known.tolist())
    return Query(
        engine.user(user_id), recent, k, exclude_seen, None if genres is None else tuple(genres)
    )


def _request_id() -> str:
    return str(uuid.uuid4())


def _json(body: dict[str, Any]) -> bytes:
    """A response body of plain values as JSON, encoded as pydantic encodes its models.

    The endpoints' annotations (the response models) still give the OpenAPI
    schema; building the models only to dump them again cost more than the
    encoding itself.
    """
    return pydantic_core.to_json(body, inf_nan_mode="null")


def _response(status: int, body: bytes) -> Any:
    return Response(body, status_code=status, media_type="application/json")


def _rendered(body: BaseModel) -> Any:
    """The body as JSON, ready to send.

    The API's annotation (the response model) still gives the OpenAPI schema,
    but a model returned as such is dumped to a dict and then again to JSON by
    BentoML; rendering it once here saves that on every request.
    """
    return Response(body.model_dump_json(), media_type="application/json")


def _unprocessable(error: RequestError) -> tuple[int, bytes]:
    """The same shape as a validation error: ``detail[].loc`` names the field; one log line."""
    log.warning("422 %s: %s", error.field, error.reason)
    return 422, _json(
        {
            "error": str(error),
            "detail": [{"loc": error.field.split("."), "msg": error.reason, "type": "value_error"}],
        }
    )
