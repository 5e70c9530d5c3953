"""Names the contract and the components share, defined once, below both.

The job's ``Literal`` fields, the CRD's enums and patterns, the evaluation and the training
settings all read these; a new metric is added here and nowhere else.
"""

from __future__ import annotations

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
