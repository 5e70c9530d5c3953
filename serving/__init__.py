"""Serving: the BentoML service, its retrieval index, and the helpers that launch it.

- :mod:`.service`: ``bentoml serve kuberec.serving.service:Recommender`` (model from
  ``$KUBEREC_MODEL``): ``/recommend``, ``/similar``, ``/score``, ``/feedback``,
  ``/healthz``, ``/readyz``, ``/metrics``.
- :mod:`.engine`: the same logic without HTTP (ids -> ranked, explained items).
- :mod:`.batching`: the in-process adaptive batcher in front of the model.
- :mod:`.online_features`: fresh user histories from the Feast online store.
- :mod:`.feedback_loop` (with ``feedback_push``, ``feedback_sink``, ``feedback_settings``,
  ``feedback_metrics``): /feedback pushed to Feast and stored for training, off the request path.
- :mod:`.retrieval`: exact top-K, or a faiss ANN index for large catalogues.
- :mod:`.server`: :func:`start_server`, :func:`wait_ready`, :func:`stop_server`.
- :mod:`.canary`: the sticky split, the analysis, the router, local rollouts, replay.

Nothing heavy is imported here, so ``import kuberec.serving`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

__all__ = ["free_port", "start_server", "stop_server", "wait_ready"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kuberec.serving import server

        return getattr(server, name)
    raise AttributeError(f"module 'kuberec.serving' has no attribute {name!r}")
