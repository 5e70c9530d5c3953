"""Names the contract and the components share, defined once, below both.

The job's ``Literal`` fields, the CRD's enums and patterns, the evaluation and the training
settings all read these; a new metric is added here and nowhere else. A registry above
the contract (MovieLens releases, evaluation protocols) is keyed by these names and
calls :func:`check_registry` at import, so a name without an entry, or an entry
without a name, fails the first import rather than a job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

Metric = Literal["ndcg", "precision", "recall", "map", "hit_rate", "mrr"]
#: The ranking metrics, in the order the job's ``evaluation.metric`` enum lists them.
METRICS: tuple[str, ...] = get_args(Metric)

#: ``model.type: auto``'s defaults (components/train/auto.py): the closed-form types, which
#: fit in seconds on 2 CPU cores, then the sequence models, tried only where the data has
#: usable order; last, so that the one-standard-error rule keeps a closed-form type unless
#: a sequence model is clearly better. Other deep models only when listed.
AUTO_MODEL = "auto"
AUTO_CANDIDATES = ("ease_t", "ease", "sparse_ease", "item_knn", "popularity", "sasrec", "gru4rec")
AUTO_BUDGET_SECONDS = 300.0
AUTO_MEMORY_GIB = 12.0

MovieLensRelease = Literal["ml-100k", "ml-1m", "ml-latest-small", "ml-25m", "ml-32m"]
#: The releases ``data.movielens`` names: ``components/datasets/movielens.py`` has one each.
MOVIELENS_RELEASES: tuple[str, ...] = get_args(MovieLensRelease)

#: Every registered evaluation protocol (``components/evaluation/protocols.py``).
PROTOCOL_NAMES: tuple[str, ...] = (
    "stratified",
    "stratified-item",
    "random-811",
    "leave-one-out",
    "leave-one-out-sampled",
    "temporal",
    "cold-items",
)
#: The protocols a job's ``evaluation.protocol`` names, in its CRD enum's order: the
#: sampled leave-one-out, the per-item stratified split and cold items are the library's
#: and the benchmarks'.
JobProtocol = Literal["temporal", "stratified", "random-811", "leave-one-out"]


def check_registry(registry: Mapping[str, object], names: tuple[str, ...], what: str) -> None:
    """Raise unless ``registry`` has exactly one entry per name (a bug, hence no KuberecError)."""
    unnamed = sorted(set(registry) - set(names))
    missing = sorted(set(names) - set(registry))
    if unnamed or missing:
        raise LookupError(
            f"{what}: entries {unnamed} have no name and names {missing} no entry; "
            "add each to both the registry and kuberec/api/names.py"
        )


if not set(get_args(JobProtocol)) <= set(PROTOCOL_NAMES):
    raise LookupError(f"JobProtocol names a protocol missing from PROTOCOL_NAMES {PROTOCOL_NAMES}")
