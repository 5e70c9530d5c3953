"""Hyperparameter search with Ray Tune: ASHA stops weak trials early, within a trial budget.

Each trial trains one model in one process with the loop every backend runs
(``loop.py``: build, optimise, validate on the early-stopping holdout, stop
after ``patience`` stale epochs) and reports
the validation metric every epoch, so ASHA can stop a trial whose metric trails
the others at a rung instead of spending its remaining epochs. The holdout is
carved once on the driver and the encoded data travels through the object store
once, so every trial is compared on exactly the same pairs.

The search returns hyperparameters, not a model: retrain with
:func:`~kuberec.components.train.trainer.train` and ``best_hparams`` to get
weights (with DDP, checkpoints and the full epoch budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.models import EncodedData, TrainingError, resolve_hparams
from kuberec.components.models.registry import model_type as lookup_model_type
from kuberec.components.models.search_space import WEIGHT_DECAY, LogUniform, Uniform
from kuberec.components.models.search_space import Domain as SearchDomain
from kuberec.components.train.loop import EarlyStopping, monitored, set_up_training, timed_epoch
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import ensure_ray
from kuberec.components.train.validation import Holdout, carve_holdout, encode_holdout, validate
from kuberec.errors import ConfigError

#: Successive halving keeps the best 1/REDUCTION_FACTOR of the trials at each rung.
REDUCTION_FACTOR = 2


@dataclass
class TuneOutcome:
    """The winning hyperparameters, their score, and what every trial did.

    ``trials`` has one row per trial (in creation order): ``trial_id``, ``status``
    (TERMINATED or ERROR), ``stopped_by`` (completed, asha, patience or error),
    ``iterations`` (epochs run), ``score`` (its best ``metric`` over those epochs),
    ``best_epoch``, ``loss`` (last epoch), ``seconds`` and one column per searched
    hyperparameter. ``history`` has one row per trial and epoch.
    """

    best_hparams: dict[str, Any]
    best_score: float
    trials: pd.DataFrame
    metric: str
    history: pd.DataFrame


def search_space(model_type: str) -> dict[str, Any]:
    """The default search space of a trainable model type: only keys it accepts.

    Each model declares its space beside it (``ModelType.search_space``: ranges around its
    defaults, wide enough to matter on small and large data; every value they can produce
    passes ``resolve_hparams``); a trained type without one tunes the optimiser only.
    """
    spec = lookup_model_type(model_type)
    if not spec.trainable:
        raise ConfigError(f"model type {model_type!r} is not trained; it has nothing to tune")
    space = spec.search_space or {"lr": LogUniform(1e-4, 1e-2), "weight_decay": WEIGHT_DECAY}
    return {key: _ray_domain(domain) for key, domain in space.items()}


def _ray_domain(domain: SearchDomain) -> Domain:
    if isinstance(domain, LogUniform):
        return tune.loguniform(domain.low, domain.high)
    if isinstance(domain, Uniform):
        return tune.uniform(domain.low, domain.high)
    return tune.choice(list(domain.values))


def tune_hparams(
    model_type: str,
    dataset: Dataset,
    *,
    budget: int,
    settings: TrainSettings,
    space: Mapping[str, Any] | None = None,
    storage_path: Path,
    base_hparams: Mapping[str, Any] | None = None,
    max_concurrent: int | None = None,
    run_name: str = "kuberec-tune",
    text_embeddings: np.ndarray | None = None,
) -> TuneOutcome:
    """Search ``budget`` sampled configurations of ``model_type``; the best validation wins.

    The searched space is :func:`search_space` without the keys ``base_hparams``
    fixes, updated with ``space`` (its keys win; values are ``ray.tune`` domains or
    constants). Each trial is one process (``settings.workers`` does not apply)
    with ``settings.cpus_per_worker`` CPUs (and ``gpus_per_worker`` GPUs with
    ``use_gpu``); at most ``max_concurrent`` run at a time (default: as many as
    the cluster holds). With one at a time, a seeded search is reproducible.
    Raises ConfigError before Ray starts on bad input.
    """
    _check_budget(budget)
    base = resolve_hparams(model_type, base_hparams)
    fixed = set(base_hparams or {})
    defaults = {k: v for k, v in search_space(model_type).items() if k not in fixed}
    searched = {**defaults, **dict(space or {})}
    _check_space(model_type, searched, base)
    if max_concurrent is not None:
        _check_positive("max_concurrent", max_concurrent)
    if settings.validation_fraction <= 0:
        raise ConfigError("validation_fraction: tuning needs a holdout to compare trials, got 0")
    metric = f"val_{settings.validation_metric}"

    fit_set, held_out = carve_holdout(dataset, settings.validation_fraction, settings.seed)
    data = EncodedData.from_dataset(fit_set, text_embeddings=text_embeddings)
    holdout = encode_holdout(data, held_out)
    if len(holdout) == 0:
        raise ConfigError(
            f"validation_fraction: {settings.validation_fraction} holds out no known "
            "user-item pair of this dataset; raise it"
        )

    ensure_ray(settings)
    # with_parameters puts data and holdout in the object store once for all trials
    trial = tune.with_parameters(
        _run_trial, model_type=model_type, base=base, data=data, holdout=holdout,
        settings=settings,
    )  # fmt: skip
    trainable = tune.with_resources(trial, _trial_resources(settings))
    tuner = tune.Tuner(
        trainable,
        param_space=searched,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode="max",
            num_samples=budget,
            reuse_actors=True,  # a fresh trial process re-imports torch: seconds per trial
            scheduler=ASHAScheduler(
                max_t=settings.epochs,
                grace_period=_grace_period(settings.epochs),
                reduction_factor=REDUCTION_FACTOR,
            ),
            # Tune ignores max_concurrent_trials for a variant generator: it limits itself
            search_alg=BasicVariantGenerator(
                max_concurrent=max_concurrent or _concurrency(settings, budget),
                random_state=settings.seed,
            ),
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=str(Path(storage_path).resolve()),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    trials, history = _tables(grid, list(searched), metric, settings)
    return _outcome(model_type, base, trials, history, metric, grid)


def _run_trial(
    config: dict[str, Any],
    *,
    model_type: str,
    base: dict[str, Any],
    data: EncodedData,
    holdout: Holdout,
    settings: TrainSettings,
) -> None:
    """One trial: the shared loop (``loop.py``), reporting every epoch to Tune."""
    hparams = resolve_hparams(model_type, {**base, **config})
    run = set_up_training(model_type, data, hparams, settings)
    stopping = EarlyStopping(settings.patience)
    for epoch in range(settings.epochs):
        loss, seconds = timed_epoch(
            run.model, run.optimizer, run.sampler.batches(epoch), epoch=epoch,
            device=run.device, hparams=hparams, amp=run.amp,
        )  # fmt: skip
        scores = validate(run.model, data, holdout, settings.validation_k)
        stopping.observe(epoch, monitored(scores, settings.validation_metric, loss))
        tune.report(
            {
                "epoch": epoch, "loss": loss, "seconds": seconds,
                **{f"val_{k}": v for k, v in scores.items()}, **stopping.state(),
            }
        )  # fmt: skip
        if stopping.done:
            return


def _check_budget(budget: object) -> None:
    _check_positive("budget", budget)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")


def _check_space(model_type: str, space: Mapping[str, Any], base: dict[str, Any]) -> None:
    """Unknown keys, grid searches and out-of-range bounds fail here, not in a trial."""
    accepted = set(resolve_hparams(model_type))
    unknown = sorted(set(space) - accepted)
    if unknown:
        raise ConfigError(
            f"search space: unknown hyperparameter(s) {unknown} for model type "
            f"{model_type!r}; valid: {sorted(accepted)}"
        )
    for key, domain in space.items():
        if isinstance(domain, Mapping) and "grid_search" in domain:
            raise ConfigError(
                f"search space {key!r}: grid_search multiplies the trial budget; use tune.choice"
            )
        for value in _probe_values(domain):
            try:
                resolve_hparams(model_type, {**base, key: value})
            except ConfigError as exc:
                raise ConfigError(f"search space {key!r}: {exc}") from None


def _probe_values(domain: Any) -> list[Any]:
    """Values at the edges of what ``domain`` samples (none for sample_from functions)."""
    if isinstance(domain, Categorical):
        return list(domain.categories)
    if isinstance(domain, Float):  # uniform's upper bound is never drawn
        return [domain.lower, float(np.nextafter(domain.upper, domain.lower))]
    if isinstance(domain, Integer):  # randint's upper bound is exclusive
        return [domain.lower, max(domain.lower, domain.upper - 1)]
    if isinstance(domain, Domain):
        return []
    return [domain]  # a constant


def _grace_period(epochs: int) -> int:
    """A quarter of the epochs, between 1 and 2: one epoch from random init is noisy."""
    return max(1, min(2, epochs // 4))


def _trial_resources(settings: TrainSettings) -> dict[str, float]:
    resources = {"cpu": settings.cpus_per_worker}
    if settings.use_gpu:
        resources["gpu"] = settings.gpus_per_worker
    return resources


def _concurrency(settings: TrainSettings, budget: int) -> int:
    """As many trials as the cluster's CPUs (and GPUs) hold at once, at least one."""
    available = ray.cluster_resources()
    fits = [budget]
    if settings.cpus_per_worker > 0:
        fits.append(int(available.get("CPU", 1) // settings.cpus_per_worker))
    if settings.use_gpu and settings.gpus_per_worker > 0:
        fits.append(int(available.get("GPU", 0) // settings.gpus_per_worker))
    return max(1, min(fits))


def _tables(
    grid: tune.ResultGrid, keys: list[str], metric: str, settings: TrainSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per trial, one row per trial and epoch), trials in creation order."""
    columns = ["trial_id", "training_iteration", "epoch", "loss", "seconds", metric]
    rows, epochs = [], []
    for result in grid:
        frame = result.metrics_dataframe
        last = result.metrics or {}
        trial_id = last.get("trial_id") or Path(result.path).name
        scores = (
            frame[metric] if frame is not None and metric in frame else pd.Series([], dtype=float)
        )
        iterations = int(last.get("training_iteration", 0))
        rows.append(
            {
                "trial_id": trial_id,
                "status": "ERROR" if result.error else "TERMINATED",
                "stopped_by": _stopped_by(result.error, iterations, last, settings),
                "iterations": iterations,
                "score": float(scores.max()) if len(scores) else math.nan,
                "best_epoch": int(last.get("best_epoch", -1)),
                "loss": float(last.get("loss", math.nan)),
                "seconds": float(frame["seconds"].sum()) if len(scores) else 0.0,
                **{k: (result.config or {}).get(k) for k in keys},
            }
        )
        if len(scores):
            epochs.append(frame.assign(trial_id=trial_id)[columns])
    trials = pd.DataFrame(rows).sort_values("trial_id", ignore_index=True)
    history = (
        pd.concat(epochs, ignore_index=True).sort_values(
            ["trial_id", "training_iteration"], ignore_index=True
        )
        if epochs
        else pd.DataFrame(columns=columns)
    )
    return trials, history


def _stopped_by(
    error: Exception | None, iterations: int, last: Mapping[str, Any], settings: TrainSettings
) -> str:
    if error is not None:
        return "error"
    if iterations >= settings.epochs:
        return "completed"
    if int(last.get("stale", 0)) >= settings.patience:
        return "patience"
    return "asha"


def _outcome(
    model_type: str,
    base: dict[str, Any],
    trials: pd.DataFrame,
    history: pd.DataFrame,
    metric: str,
    grid: tune.ResultGrid,
) -> TuneOutcome:
    scored = trials.dropna(subset=["score"])
    if scored.empty:
        raise TrainingError(f"{model_type}: no tuning trial reported a score: {_cause(grid)}")
    winner = scored.loc[scored["score"].idxmax()]
    config = next(r.config for r in grid if r.config and _same_trial(r, winner["trial_id"]))
    best = resolve_hparams(model_type, {**base, **config})
    return TuneOutcome(best, float(winner["score"]), trials, metric, history)


def _same_trial(result: Any, trial_id: str) -> bool:
    return (result.metrics or {}).get("trial_id") == trial_id


def _cause(grid: tune.ResultGrid) -> str:
    """The first trial's own exception line, not Ray's traceback around it."""
    if not grid.errors:
        return "no trial failed; check the validation metric"
    lines = [line for line in str(grid.errors[0]).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(grid.errors[0]).__name__
