"""Tuned recipes: committed files load checked, and a fixed-budget recipe trains on everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberec.components.models import recipes
from kuberec.components.models.recipes import TunedRecipe, load_recipe, write_recipe
from kuberec.errors import ConfigError


def test_the_committed_bivae_recipe_trains_a_fixed_budget_without_a_holdout() -> None:
    recipe = load_recipe("bivae", "ml-100k")
    assert recipe is not None
    assert recipe.validation_fraction == 0.0
    assert recipe.patience >= recipe.epochs  # nothing to stop on: every epoch runs


def test_a_written_recipe_loads_back_with_its_holdout_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recipes, "RECIPES_DIR", tmp_path)
    write_recipe(TunedRecipe("multvae", "toy", {"lr": 0.003}, 50, 5, 0.0), {"tried": []})
    write_recipe(TunedRecipe("mf", "toy", {"dim": 16}, 30, 3), {"tried": []})
    assert load_recipe("multvae", "toy") == TunedRecipe("multvae", "toy", {"lr": 0.003}, 50, 5, 0.0)
    assert load_recipe("mf", "toy").validation_fraction is None  # the run's default holdout


def test_a_recipe_with_an_unknown_hyperparameter_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recipes, "RECIPES_DIR", tmp_path)
    write_recipe(TunedRecipe("bivae", "toy", {"depth": 3}, 10, 2), {})
    with pytest.raises(ConfigError, match="depth"):
        load_recipe("bivae", "toy")
