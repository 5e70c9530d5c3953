"""Ray Tune search: a seeded ASHA run within its budget, and bad input refused before Ray starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
from ray import tune

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import MODEL_TYPES, TrainingError, resolve_hparams
from kuberec.components.train import tune as tuning
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.tune import TuneOutcome, search_space, tune_hparams
from kuberec.errors import ConfigError

pytestmark = pytest.mark.slow

EPOCHS = 3
#: A useless learning rate next to a working one: trials with the first trail at every rung.
LEARNING_RATES = [1e-6, 0.05]
SETTINGS = TrainSettings(epochs=EPOCHS, patience=EPOCHS, seed=0, validation_fraction=0.1)
TRAINED = sorted(name for name, spec in MODEL_TYPES.items() if spec.trainable)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SyntheticSpec(300, 200, 8000, seed=0))


@pytest.fixture(scope="module")
def outcome(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TuneOutcome]:
    """One search for the whole module: Ray's start-up dominates a run this small."""
    try:
        yield tune_hparams(
            "mf",
            dataset,
            budget=4,
            settings=SETTINGS,
            space={"lr": tune.choice(LEARNING_RATES)},
            base_hparams={"dim": 32},
            storage_path=tmp_path_factory.mktemp("tune"),
            max_concurrent=1,  # trials in order: ASHA's decisions are reproducible
        )
    finally:
        ray.shutdown()


def test_the_best_trial_wins_and_its_hparams_resolve(outcome: TuneOutcome) -> None:
    assert outcome.metric == "val_ndcg"
    assert resolve_hparams("mf", outcome.best_hparams) == outcome.best_hparams
    assert outcome.best_score == outcome.trials["score"].max()
    assert outcome.best_score == outcome.history["val_ndcg"].max()
    winner = outcome.trials.loc[outcome.trials["score"].idxmax()]
    assert outcome.best_hparams["lr"] == winner["lr"]
    assert outcome.best_hparams["reg"] == pytest.approx(winner["reg"])


def test_the_budget_is_the_number_of_trials(outcome: TuneOutcome) -> None:
    trials = outcome.trials
    assert len(trials) == 4
    assert (trials["status"] == "TERMINATED").all()
    assert set(trials["lr"]) <= set(LEARNING_RATES)
    assert trials["iterations"].min() >= 1 and trials["iterations"].max() == EPOCHS


def test_fixed_hparams_are_not_searched(outcome: TuneOutcome) -> None:
    assert "dim" not in outcome.trials.columns
    assert outcome.best_hparams["dim"] == 32
    assert {"lr", "reg"} <= set(outcome.trials.columns)


def test_asha_stops_trials_that_trail_at_a_rung(outcome: TuneOutcome) -> None:
    """Replaying ASHA's rule on the reported metrics gives each trial's epoch count."""
    expected = _asha_iterations(
        outcome.history,
        max_t=EPOCHS,
        grace=tuning._grace_period(EPOCHS),
        factor=tuning.REDUCTION_FACTOR,
    )
    actual = dict(zip(outcome.trials["trial_id"], outcome.trials["iterations"], strict=True))
    assert actual == expected
    stopped = outcome.trials[outcome.trials["stopped_by"] == "asha"]
    assert len(stopped) >= 1, outcome.trials  # e.g. a 1e-6 trial after a 0.05 one
    assert (stopped["iterations"] < EPOCHS).all()


def test_a_search_whose_trials_all_fail_says_why(
    outcome: TuneOutcome, dataset: Dataset, tmp_path: Path
) -> None:
    """A sample_from value escapes the up-front checks; the trial's own error comes back."""
    with pytest.raises(TrainingError, match=r"n_heads.*must divide dim \(10\), got 4"):
        tune_hparams(
            "sasrec",
            dataset,
            budget=1,
            settings=TrainSettings(epochs=1, max_failures=0),
            space={"dim": tune.sample_from(lambda _: 10)},
            base_hparams={"n_heads": 4},
            storage_path=tmp_path,
        )


@pytest.mark.parametrize("model_type", TRAINED)
def test_default_spaces_only_sample_valid_hparams(model_type: str) -> None:
    space = search_space(model_type)
    assert space and set(space) <= set(resolve_hparams(model_type))
    rng = np.random.default_rng(0)
    for _ in range(20):
        config = {k: v.sample(random_state=rng) for k, v in space.items()}
        resolve_hparams(model_type, config)


def test_untrained_model_types_have_no_space() -> None:
    with pytest.raises(ConfigError, match="popularity"):
        search_space("popularity")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, r"budget: must be an integer >= 1, got 0"),
        ({"budget": 2.5}, r"budget: must be an integer >= 1, got 2.5"),
        ({"space": {"bogus": tune.uniform(0, 1)}}, r"unknown hyperparameter\(s\) \['bogus'\]"),
        ({"space": {"temperature": tune.uniform(0.1, 1)}}, r"\['temperature'\] for model"),
        ({"space": {"dim": tune.choice([8, 0])}}, r"search space 'dim': .*>= 1, got 0"),
        ({"space": {"lr": tune.uniform(-1.0, 0.1)}}, r"search space 'lr'"),
        ({"space": {"dim": tune.grid_search([8, 16])}}, r"'dim': grid_search"),
        ({"base_hparams": {"dims": 8}}, r"unknown hyperparameter\(s\) \['dims'\]"),
        ({"max_concurrent": 0}, r"max_concurrent: must be an integer >= 1"),
        ({"settings": TrainSettings(validation_fraction=0)}, r"validation_fraction"),
    ],
)
def test_bad_input_is_refused_before_ray_starts(
    dataset: Dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, object],
    message: str,
) -> None:
    monkeypatch.setattr(tuning, "ensure_ray", _no_ray)
    arguments: dict[str, object] = {"budget": 2, "settings": SETTINGS, "storage_path": tmp_path}
    with pytest.raises(ConfigError, match=message):
        tune_hparams("mf", dataset, **{**arguments, **kwargs})  # type: ignore[arg-type]


def test_untrained_model_types_are_refused(dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'item_knn' is not trained"):
        tune_hparams("item_knn", dataset, budget=2, settings=SETTINGS, storage_path=tmp_path)


def _no_ray(settings: TrainSettings) -> None:
    raise AssertionError("Ray started for input that should have been refused")


def _asha_iterations(
    history: pd.DataFrame, *, max_t: int, grace: int, factor: int
) -> dict[str, int]:
    """Epochs each trial runs under asynchronous successive halving, trials one at a time.

    At each rung (grace, grace*factor, ... < max_t) a trial stops when its metric is
    below the (1 - 1/factor) quantile of the trials that reached that rung before it.
    """
    rungs = [grace * factor**k for k in range(max_t) if grace * factor**k < max_t]
    recorded: dict[int, list[float]] = {rung: [] for rung in rungs}
    iterations = {}
    for trial_id, trial in history.groupby("trial_id", sort=True):
        scores = trial.set_index("training_iteration")["val_ndcg"]
        ran = max_t
        for rung in rungs:
            score = float(scores[rung])
            earlier = recorded[rung]
            cutoff = np.nanpercentile(earlier, (1 - 1 / factor) * 100) if earlier else None
            earlier.append(score)
            if cutoff is not None and score < cutoff:
                ran = rung
                break
        iterations[str(trial_id)] = ran
    return iterations
