"""Tuned recipes: the hyperparameters and epoch budget a model type was tuned to, per dataset.

A recipe is ``recipes/<dataset>/<model_type>.json``, written by
``benchmarks/tune_recipe.py`` from a grid scored on a validation holdout carved
from the protocol's training split (never its test split). The file records what
was tried and how each setting scored, so the choice can be audited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kuberec.components.models.registry import resolve_hparams
from kuberec.errors import ConfigError

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class TunedRecipe:
    model_type: str
    dataset: str
    hparams: dict[str, Any]
    epochs: int
    patience: int
    #: The early-stopping holdout's share; 0: train ``epochs`` on the whole training part
    #: (a fixed budget chosen beforehand). ``None``: the run's default.
    validation_fraction: float | None = None


def recipe_path(model_type: str, dataset: str) -> Path:
    return RECIPES_DIR / dataset / f"{model_type}.json"


def load_recipe(model_type: str, dataset: str) -> TunedRecipe | None:
    """The committed recipe, its hyperparameters checked; ``None`` when none was tuned."""
    path = recipe_path(model_type, dataset)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        hparams = dict(raw["hparams"])
        epochs, patience = int(raw["epochs"]), int(raw["patience"])
        fraction = raw.get("validation_fraction")
        fraction = None if fraction is None else float(fraction)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a recipe file ({exc}); rerun benchmarks/tune_recipe.py"
        ) from None
    resolve_hparams(model_type, hparams)  # a stale recipe fails here, naming the key
    return TunedRecipe(model_type, dataset, hparams, epochs, patience, fraction)


def write_recipe(recipe: TunedRecipe, record: dict[str, Any]) -> Path:
    """Save ``recipe`` with ``record`` (the grid and its validation scores) beside it."""
    path = recipe_path(recipe.model_type, recipe.dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "hparams": recipe.hparams,
        "epochs": recipe.epochs,
        "patience": recipe.patience,
        **(
            {}
            if recipe.validation_fraction is None
            else {"validation_fraction": recipe.validation_fraction}
        ),
        **record,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path
