"""One training run end to end: train on Ray, then write the run directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kuberec import __version__
from kuberec.api.names import AUTO_MODEL
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.models import save_model
from kuberec.components.train.auto import AutoSpec, Selection, require_no_hparams, select
from kuberec.components.train.run_dir import (
    CONFIG,
    ITEMS,
    METRICS,
    MODEL,
    write_curves,
    write_json,
)
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import TrainOutcome, train
from kuberec.errors import ConfigError

#: The default: choose among the candidates on validation data (components/train/auto.py).
DEFAULT_MODEL = AUTO_MODEL
#: The best single model measured on ml-100k (benchmarks/RESULTS.md, quality).
BEST_MEASURED = "ease_t"


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    model_type: str
    best_epoch: int
    validation: dict[str, float]
    seconds: float
    selection: Selection | None = None


def train_run(
    dataset: Dataset,
    out: Path,
    *,
    model_type: str | None = None,
    hparams: dict[str, Any] | None = None,
    settings: TrainSettings | None = None,
    source: dict[str, Any] | None = None,
    text_embeddings: np.ndarray | None = None,
    overwrite: bool = False,
    auto: AutoSpec | None = None,
    selection: Selection | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> RunSummary:
    """Train and write ``out``; an existing non-empty run directory is never clobbered.

    ``model_type`` auto (the default) first selects a type with ``auto``'s budget
    and candidates (or takes an earlier ``selection``), then fits the winner on all
    of ``dataset``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} already holds a run; choose another --out or remove it")
    settings = settings or TrainSettings()
    model_type = model_type or DEFAULT_MODEL
    if model_type == AUTO_MODEL:
        require_no_hparams(hparams)
        selection = selection or select(
            dataset,
            auto or AutoSpec(),
            settings,
            text_embeddings=text_embeddings,
            progress=progress,
        )
        model_type = selection.chosen
    out.mkdir(parents=True, exist_ok=True)
    storage = settings.storage_path or out / "ray"
    outcome = train(
        model_type, dataset, hparams, settings, storage_path=storage,
        run_name=out.name or "run", text_embeddings=text_embeddings,
    )  # fmt: skip
    _write(out, outcome, settings, source or {"dataset": dataset.name}, overwrite, selection)
    dataset.items[["item_id", "title"]].to_parquet(out / ITEMS, index=False)
    return RunSummary(
        out,
        model_type,
        outcome.best_epoch,
        outcome.validation,
        round(outcome.seconds, 2),
        selection,
    )


def _write(
    out: Path,
    outcome: TrainOutcome,
    settings: TrainSettings,
    source: dict[str, Any],
    overwrite: bool,
    selection: Selection | None,
) -> None:
    if overwrite and (out / MODEL).exists():
        shutil.rmtree(out / MODEL)
    save_model(outcome.model, outcome.model_type, outcome.hparams, outcome.data, out / MODEL)
    write_json(
        out / CONFIG,
        {
            "kuberec_version": __version__,
            "model_type": outcome.model_type,
            "hparams": outcome.hparams,
            "training": settings.to_dict(),
            "data": source,
            "text_embeddings": outcome.data.item_text is not None,
        },
    )
    write_json(
        out / METRICS,
        {
            "history": outcome.history,
            "best_epoch": outcome.best_epoch,
            "validation": outcome.validation,
            "seconds": outcome.seconds,
            "checkpoint": outcome.checkpoint,
            **({"selection": selection.to_dict()} if selection else {}),
            "data": {
                "users": outcome.data.n_users,
                "items": outcome.data.n_items,
                "interactions": outcome.data.n_interactions,
            },
        },
    )
    write_curves(out, outcome.history, settings.validation_metric)


def describe(summary: RunSummary) -> str:
    return json.dumps(
        {
            "run_dir": str(summary.run_dir),
            "model": summary.model_type,
            "best_epoch": summary.best_epoch,
            "validation": {k: round(v, 4) for k, v in summary.validation.items()},
            "seconds": summary.seconds,
            **({"chosen_by": "auto"} if summary.selection else {}),
        }
    )
