"""The pipeline's features step: ingest -> apply -> materialize, with a summary.

The KFP component ``features_step`` (``pipelines/steps.py``) calls
:func:`run_features` on every platform: ``kuberec run`` runs the same pipeline
with ``kfp.local``, so there is no second path that builds features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.features import operations
from kuberec.components.features.ingest import ingest
from kuberec.components.features.store import StoreSettings, open_store


@dataclass
class FeaturesSummary:
    """What the step reports: rows per source, the views applied and materialized, timings."""

    dataset: dict[str, object]
    rows: dict[str, int]
    views: list[str]
    materialized: list[str]
    watermark: str
    store: str
    seconds: dict[str, float] = field(default_factory=dict)


def run_features(
    dataset: Dataset,
    settings: StoreSettings,
    *,
    text_embeddings: bool = True,
    recent_days: int = 30,
) -> FeaturesSummary:
    """Write the Feast sources of ``dataset``, apply the repo, materialize the online store."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    result = ingest(
        dataset, settings.sources_dir, text_embeddings=text_embeddings, recent_days=recent_days
    )
    seconds["ingest"] = time.perf_counter() - start
    store = open_store(settings)
    start = time.perf_counter()
    views = operations.apply(store)
    seconds["apply"] = time.perf_counter() - start
    start = time.perf_counter()
    materialized = operations.materialize(store)
    seconds["materialize"] = time.perf_counter() - start
    return FeaturesSummary(
        dataset=dataset.summary(),
        rows=result.rows,
        views=views,
        materialized=materialized.views,
        watermark=materialized.end.isoformat(),
        store=str(settings.repo_dir / "feature_store.yaml"),
        seconds={k: round(v, 2) for k, v in seconds.items()},
    )
