"""Offline evaluation in numpy/pandas: split protocols, ranking metrics, beyond-accuracy, slices.

Protocols live in :mod:`.protocols`, accuracy metrics and AUC in :mod:`.metrics`,
coverage/novelty/diversity/popularity in :mod:`.beyond_accuracy`, per-slice tables
in :mod:`.slices`. Each module's docstring states the definitions and their sources.
"""

from __future__ import annotations

from kuberec.components.evaluation._frames import Recommendations, top_k
from kuberec.components.evaluation.beyond_accuracy import (
    average_popularity,
    catalogue_coverage,
    intra_list_diversity,
    multi_hot,
    novelty,
)
from kuberec.components.evaluation.metrics import (
    RANKING_METRICS,
    RankedHits,
    auc,
    hit_rate_at_k,
    map_at_k,
    mean_user_auc,
    mrr_at_k,
    ndcg_at_k,
    per_user_metrics,
    precision_at_k,
    ranked_hits,
    ranking_metrics,
    recall_at_k,
)
from kuberec.components.evaluation.protocols import (
    PROTOCOLS,
    Split,
    kfold,
    leave_one_out,
    leave_one_out_sampled,
    protocol_options,
    random_811,
    split,
    stratified,
    stratified_item,
    temporal,
)
from kuberec.components.evaluation.slices import slice_report, user_slices

__all__ = [
    "PROTOCOLS",
    "RANKING_METRICS",
    "RankedHits",
    "Recommendations",
    "Split",
    "auc",
    "average_popularity",
    "catalogue_coverage",
    "hit_rate_at_k",
    "intra_list_diversity",
    "kfold",
    "leave_one_out",
    "leave_one_out_sampled",
    "map_at_k",
    "mean_user_auc",
    "mrr_at_k",
    "multi_hot",
    "ndcg_at_k",
    "novelty",
    "per_user_metrics",
    "precision_at_k",
    "protocol_options",
    "random_811",
    "ranked_hits",
    "ranking_metrics",
    "recall_at_k",
    "slice_report",
    "split",
    "stratified",
    "stratified_item",
    "temporal",
    "top_k",
    "user_slices",
]
