"""The ceiling BentoML's own request path allows: the service's shape with a no-op endpoint.

``bentoml serve serving_noop:NoopRecommender --working-dir benchmarks`` (started by
``benchmarks/serving.py``): the same ``@bentoml.service`` settings as
:class:`kuberec.serving.service.Recommender` (access log and OpenTelemetry spans
off, BentoML's metrics bounded), the same ASGI middlewares (kuberec's request
metrics, the body limit) and the same validated ``/recommend`` input model, but
the endpoint answers the floor's fixed 10-item body without a model. What it
costs per request is what BentoML's ``@bentoml.api`` path costs before any model
work: the gap between it and the bare-ASGI floor is the framework's, not ours.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import bentoml
from starlette.responses import Response

from kuberec.serving import bentoml_fixes, metrics
from kuberec.serving.limits import BodyLimit
from kuberec.serving.schemas import RecommendRequest, RecommendResponse

ITEMS = [
    {"item_id": 1 + i, "score": 1.0 - i / 100, "explanation": "because you liked Star Wars (1977)"}
    for i in range(1000)
]


@bentoml.service(
    name="kuberec-noop",
    workers=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": list(metrics.ENDPOINTS)},
)
class NoopRecommender:
    """``/recommend`` through ``@bentoml.api`` with no model behind it."""

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, **fields: Any) -> RecommendResponse:
        request = RecommendRequest.model_construct(**fields)
        answer = {
            "items": ITEMS[: request.k],
            "model_version": "noop",
            "request_id": str(uuid.uuid4()),
            "fallback": False,
        }
        return Response(json.dumps(answer), media_type="application/json")  # type: ignore[return-value]


NoopRecommender.add_asgi_middleware(metrics.RequestMetrics)  # type: ignore[attr-defined]
NoopRecommender.add_asgi_middleware(BodyLimit)  # type: ignore[attr-defined]
bentoml_fixes.apply()
