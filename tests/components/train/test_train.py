"""Training runs: the local loop, Ray Train with DDP, failures, early stopping, run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import EncodedData, load_model, recommend
from kuberec.components.models.errors import TrainingError
from kuberec.components.train.run import train_run
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import train
from kuberec.components.train.validation import carve_holdout, encode_holdout, validate
from kuberec.errors import ConfigError


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    return generate(SyntheticSpec(300, 200, 8000, seed=0))


@pytest.fixture(scope="module", autouse=True)
def _ray_session() -> object:
    yield
    import ray

    ray.shutdown()


def test_local_training_keeps_the_best_epoch_weights(synthetic: Dataset, tmp_path: Path) -> None:
    settings = TrainSettings(backend="local", epochs=8, patience=2)
    outcome = train("mf", synthetic, {"dim": 16}, settings, storage_path=tmp_path)
    recorded = max(r["val_ndcg"] for r in outcome.history)
    assert outcome.best_epoch == max(outcome.history, key=lambda r: r["val_ndcg"])["epoch"]
    fit_set, held = carve_holdout(synthetic, settings.validation_fraction, settings.seed)
    fit_data = EncodedData.from_dataset(fit_set)
    again = validate(outcome.model, fit_data, encode_holdout(fit_data, held), 10)
    assert again["ndcg"] == pytest.approx(recorded)


def test_next_item_models_hold_out_each_users_latest_interaction(synthetic: Dataset) -> None:
    fit_set, held = carve_holdout(synthetic, 0.1, seed=0, last=True)
    latest = synthetic.interactions.sort_values("timestamp").groupby("user_id").tail(1)
    assert held["user_id"].is_unique
    assert set(zip(held["user_id"], held["item_id"], strict=True)) <= set(
        zip(latest["user_id"], latest["item_id"], strict=True)
    )
    assert len(fit_set.interactions) + len(held) == len(synthetic.interactions)


def test_the_saved_encoding_holds_every_training_interaction(
    synthetic: Dataset, tmp_path: Path
) -> None:
    settings = TrainSettings(backend="local", epochs=1, validation_fraction=0.2)
    outcome = train("mf", synthetic, {"dim": 8}, settings, storage_path=tmp_path)
    assert outcome.data.n_interactions == len(synthetic.interactions)


def test_early_stopping_stops_after_patience_stale_epochs(
    synthetic: Dataset, tmp_path: Path
) -> None:
    settings = TrainSettings(backend="local", epochs=60, patience=1)
    outcome = train("mf", synthetic, {"dim": 8, "lr": 0.05}, settings, storage_path=tmp_path)
    assert len(outcome.history) < 60
    assert outcome.history[-1]["epoch"] == outcome.best_epoch + 1


def test_the_same_seed_gives_the_same_model(synthetic: Dataset, tmp_path: Path) -> None:
    settings = TrainSettings(backend="local", epochs=2)
    first = train("two_tower", synthetic, {"dim": 16}, settings, storage_path=tmp_path)
    second = train("two_tower", synthetic, {"dim": 16}, settings, storage_path=tmp_path)
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]


def test_ray_training_with_two_ddp_workers_writes_a_run_directory(
    synthetic: Dataset, tmp_path: Path
) -> None:
    settings = TrainSettings(workers=2, epochs=3, patience=3)
    summary = train_run(synthetic, tmp_path / "run", model_type="mf", hparams={"dim": 16},
                        settings=settings)  # fmt: skip
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [0, 1, 2]
    assert all(r["samples_per_second"] > 0 for r in metrics["history"])
    assert summary.validation["ndcg"] > 0
    assert (run / "curves.png").stat().st_size > 0
    assert any((run / "tensorboard").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["workers"] == 2 and config["hparams"]["dim"] == 16
    loaded = load_model(run / "model")
    top = recommend(loaded.model, loaded.history, [0, 1], 5)
    assert (top.items >= 0).all()


def test_local_sgd_with_two_workers_trains_and_every_worker_stops_together(
    synthetic: Dataset, tmp_path: Path
) -> None:
    """Workers average every 4 steps and at each epoch end, so they validate the same
    weights: a disagreement on early stopping would hang the run instead."""
    settings = TrainSettings(workers=2, epochs=4, patience=1, averaging_period=4)
    outcome = train("mf", synthetic, {"dim": 16, "batch_size": 64}, settings,
                    storage_path=tmp_path)  # fmt: skip
    assert [r["epoch"] for r in outcome.history] == list(range(len(outcome.history)))
    assert outcome.history[-1]["loss"] < outcome.history[0]["loss"]
    assert outcome.validation["ndcg"] > 0


def test_a_worker_failure_resumes_from_the_last_checkpoint(
    synthetic: Dataset, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"
    settings = TrainSettings(
        workers=1, epochs=4, patience=4, max_failures=1,
        extra={"chaos_fail_at_epoch": 2, "chaos_marker": str(marker)},
    )  # fmt: skip
    outcome = train("mf", synthetic, {"dim": 8}, settings, storage_path=tmp_path / "ray")
    assert marker.exists(), "the injected failure happened"
    assert [r["epoch"] for r in outcome.history] == [0, 1, 2, 3], "resumed, not restarted"


def test_a_diverging_loss_stops_with_advice_and_keeps_checkpoints(
    synthetic: Dataset, tmp_path: Path
) -> None:
    settings = TrainSettings(workers=1, epochs=3, max_failures=0)
    with pytest.raises(TrainingError, match=r"lower the learning rate.*checkpoints"):
        train("ncf", synthetic, {"lr": 1e12}, settings, storage_path=tmp_path)


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="workers: must be >= 1"):
        TrainSettings(workers=0)
    with pytest.raises(ConfigError, match="validation_metric"):
        TrainSettings(validation_metric="accuracy")


def test_two_runs_in_one_storage_path_never_resume_each_other(tmp_path: Path) -> None:
    small = generate(SyntheticSpec(100, 50, 2000, seed=1))
    large = generate(SyntheticSpec(150, 80, 3000, seed=2))
    settings = TrainSettings(workers=1, epochs=1)
    first = train("mf", small, {"dim": 8}, settings, storage_path=tmp_path, run_name="same")
    second = train("mf", large, {"dim": 8}, settings, storage_path=tmp_path, run_name="same")
    assert (first.data.n_items, second.data.n_items) == (50, 80)
