"""Metrics per user slice: an average can hide a model that fails its cold users.

Users are sliced by how many training interactions they have:

* ``cold``:    at most ``cold_max`` (a test user absent from training has 0);
* ``heavy``:   at least ``heavy_min``;
* ``regular``: everyone in between;
* ``all``:     every ground-truth user.

A slice with no users is still reported, with ``n_users`` 0 and NaN values, so the
table has the same shape for every model and dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kuberec.components.evaluation._frames import (
    Recommendations,
    check_k,
    require_columns,
    top_k,
)
from kuberec.components.evaluation.metrics import (
    RANKING_METRICS,
    MapDenominator,
    per_user_metrics,
)
from kuberec.errors import ConfigError

SLICES = ("all", "cold", "regular", "heavy")
REPORT_COLUMNS = ("slice", "metric", "k", "value", "n_users")


def user_slices(
    users: pd.Index, train: pd.DataFrame, *, cold_max: int, heavy_min: int
) -> pd.Series:
    """The slice name of each user, from their number of training interactions."""
    if not 0 <= cold_max < heavy_min:
        raise ConfigError(
            f"slice thresholds need 0 <= cold_max < heavy_min, got cold_max={cold_max}, "
            f"heavy_min={heavy_min}"
        )
    require_columns(train, ("user_id",), "train")
    history = train["user_id"].value_counts().reindex(users, fill_value=0).to_numpy()
    names = np.where(
        history <= cold_max, "cold", np.where(history >= heavy_min, "heavy", "regular")
    )
    return pd.Series(names, index=users, name="slice")


def slice_report(
    recommendations: Recommendations,
    truth: pd.DataFrame,
    train: pd.DataFrame,
    k: int | Sequence[int] = 10,
    *,
    cold_max: int = 5,
    heavy_min: int = 100,
    metrics: Sequence[str] = RANKING_METRICS,
    map_denominator: MapDenominator = "relevant",
) -> pd.DataFrame:
    """Tidy table ``slice, metric, k, value, n_users``: one row per slice, metric and K."""
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; valid: {list(RANKING_METRICS)}")
    ks = [check_k(k)] if isinstance(k, (int, np.integer)) else [check_k(one) for one in k]
    if not ks:
        raise ConfigError("k is empty; give one K or a list of them")
    ranked = top_k(recommendations, max(ks))  # rank once; smaller K reuse the order
    parts = []
    for one_k in ks:
        table = per_user_metrics(ranked, truth, one_k, map_denominator=map_denominator)
        table["slice"] = user_slices(
            pd.Index(table["user_id"]), train, cold_max=cold_max, heavy_min=heavy_min
        ).to_numpy()
        parts.append(_summarise(table, list(metrics), int(one_k)))
    return pd.concat(parts, ignore_index=True)[list(REPORT_COLUMNS)]


def _summarise(table: pd.DataFrame, metrics: list[str], k: int) -> pd.DataFrame:
    rows = []
    for name in SLICES:
        members = table if name == "all" else table[table["slice"] == name]
        for metric in metrics:
            value = float(members[metric].mean()) if len(members) else float("nan")
            rows.append((name, metric, k, value, len(members)))
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
