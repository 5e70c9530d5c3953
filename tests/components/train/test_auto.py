"""``model.type: auto``: candidates fitted and scored on validation carved from training data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kuberec.api.spec import ModelSpec
from kuberec.components.datasets.amazon_games import read_games
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models.registry import MODEL_TYPES
from kuberec.components.train import auto as auto_module
from kuberec.components.train.auto import (
    SEQUENCE_TYPES,
    AutoSpec,
    one_standard_error_choice,
    order_reason,
    select,
)
from kuberec.components.train.run import train_run
from kuberec.components.train.settings import TrainSettings
from kuberec.errors import ConfigError
from tests.support.cli import kuberec

SETTINGS = TrainSettings(backend="local", seed=3)
FAST = AutoSpec(candidates=("ease", "sparse_ease", "item_knn", "popularity"))


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SyntheticSpec(200, 90, 5000, seed=6))


def test_the_chosen_type_is_the_best_or_listed_before_it_within_one_standard_error(
    dataset: Dataset,
) -> None:
    selection = select(dataset, FAST, SETTINGS)
    scored = {c.model_type: c.validation["ndcg"] for c in selection.candidates}
    assert set(scored) == set(FAST.candidates)
    best = max(scored, key=scored.__getitem__)
    order = list(FAST.candidates)
    assert selection.chosen == best or order.index(selection.chosen) < order.index(best)
    chosen = [c for c in selection.candidates if c.status == "chosen"]
    assert [c.model_type for c in chosen] == [selection.chosen]
    assert all(c.fit_seconds is not None and c.peak_memory_mb for c in selection.candidates)


def test_the_same_seed_selects_the_same_way(dataset: Dataset) -> None:
    first, second = select(dataset, FAST, SETTINGS), select(dataset, FAST, SETTINGS)
    assert first.chosen == second.chosen
    assert [c.validation for c in first.candidates] == [c.validation for c in second.candidates]


def test_a_candidate_over_the_budget_is_skipped_with_its_estimate(dataset: Dataset) -> None:
    spec = AutoSpec(candidates=("popularity", "mf"), budget_seconds=5)
    selection = select(dataset, spec, replace(SETTINGS, epochs=1000))
    mf = next(c for c in selection.candidates if c.model_type == "mf")
    assert mf.status == "skipped" and "above the" in mf.reason and "budgetSeconds 5" in mf.reason
    assert mf.fit_seconds is None and selection.chosen == "popularity"


def test_once_the_clock_has_spent_the_budget_later_candidates_are_skipped(
    dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SlowMachine:  # every fit looks 100 s long: estimates too optimistic for this machine
        now = 0.0

        @classmethod
        def perf_counter(cls) -> float:
            cls.now += 50.0
            return cls.now

    monkeypatch.setattr(auto_module, "time", SlowMachine)
    spec = AutoSpec(candidates=("popularity", "item_knn", "ease"), budget_seconds=120)
    rows = {c.model_type: c for c in select(dataset, spec, SETTINGS).candidates}
    assert rows["popularity"].status in ("trained", "chosen")
    assert rows["item_knn"].status in ("trained", "chosen")
    assert rows["ease"].status == "skipped" and "budget spent on the clock" in rows["ease"].reason
    assert rows["ease"].fit_seconds is None


def test_the_clock_never_skips_before_one_candidate_is_trained(
    dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SlowMachine:
        now = 0.0

        @classmethod
        def perf_counter(cls) -> float:
            cls.now += 1000.0
            return cls.now

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    real = auto_module.build_model
    monkeypatch.setattr(auto_module, "time", SlowMachine)
    monkeypatch.setattr(
        auto_module,
        "build_model",
        lambda name, *a, **k: crash() if name == "ease" else real(name, *a, **k),
    )
    spec = AutoSpec(candidates=("ease", "popularity"), budget_seconds=10)
    selection = select(dataset, spec, SETTINGS)
    assert selection.chosen == "popularity"


def test_a_candidate_over_the_memory_limit_is_skipped(dataset: Dataset) -> None:
    spec = AutoSpec(candidates=("ease", "popularity"), memory_gib=0.0003)  # ~0.3 MB
    ease = select(dataset, spec, SETTINGS).candidates[0]
    assert ease.status == "skipped" and "above memoryGiB 0.0003" in ease.reason


def test_ease_t_and_sequence_models_need_timestamps(dataset: Dataset) -> None:
    untimed = replace(dataset, has_timestamps=False)
    spec = AutoSpec(candidates=("ease_t", "sasrec", "popularity"))
    reasons = {c.model_type: c.reason for c in select(untimed, spec, SETTINGS).candidates}
    assert "no timestamps" in reasons["ease_t"] and "no timestamps" in reasons["sasrec"]


def _timed(dataset: Dataset, times: dict[int, list[int]]) -> Dataset:
    """``dataset`` with, per user, one interaction at each of the given seconds."""
    rows = [(u, i, t) for u, seconds in times.items() for i, t in enumerate(seconds)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "seconds"])
    frame["rating"] = np.float32(1.0)
    frame["timestamp"] = pd.to_datetime(frame.pop("seconds"), unit="s", utc=True)
    return dataset.with_interactions(frame)


def test_the_default_candidates_try_the_sequence_models_after_every_closed_form_type() -> None:
    defaults = list(AutoSpec().candidates)
    sequence = [defaults.index(name) for name in SEQUENCE_TYPES]
    closed_form = [i for i, name in enumerate(defaults) if not MODEL_TYPES[name].trainable]
    assert sequence and closed_form and min(sequence) > max(closed_form)


def test_sequence_candidates_join_when_the_data_has_order(dataset: Dataset) -> None:
    assert order_reason(dataset) == ""
    spec = AutoSpec(candidates=("popularity", "gru4rec"))
    gru4rec = select(dataset, spec, replace(SETTINGS, epochs=2)).candidates[1]
    assert gru4rec.status in ("trained", "chosen") and gru4rec.validation["ndcg"] > 0


def test_sequence_candidates_are_skipped_with_the_reason_when_the_data_has_no_order(
    dataset: Dataset,
) -> None:
    frame = dataset.interactions.copy()  # a bulk load: one timestamp per user
    frame["timestamp"] = frame.groupby("user_id")["timestamp"].transform("min")
    unordered = dataset.with_interactions(frame)
    spec = AutoSpec(candidates=("popularity", "sasrec", "gru4rec"))
    rows = select(unordered, spec, SETTINGS).candidates
    assert [r.status for r in rows[1:]] == ["skipped", "skipped"]
    assert all(r.reason.startswith("no usable order: 0% of users") for r in rows[1:])


def test_order_is_usable_when_exactly_half_the_users_have_ordered_histories(
    dataset: Dataset,
) -> None:
    half = _timed(dataset, {1: [1, 2, 3], 2: [1, 2, 3], 3: [5, 5, 5], 4: [7, 7, 7]})
    quarter = _timed(dataset, {1: [1, 2, 3], 2: [4, 4, 4], 3: [5, 5, 5], 4: [7, 7, 7]})
    assert order_reason(half) == ""
    assert order_reason(quarter).startswith("no usable order: 25% of users")


def test_histories_of_two_items_give_no_usable_order(dataset: Dataset) -> None:
    assert "0% of users have >= 3" in order_reason(_timed(dataset, {1: [1, 2], 2: [3, 4]}))


def test_one_repeated_timestamp_among_others_still_orders_a_history(dataset: Dataset) -> None:
    assert order_reason(_timed(dataset, {1: [1, 1, 2], 2: [3, 3, 4]})) == ""


def test_a_sequence_file_has_order_by_line_position(tmp_path: Path) -> None:
    video = tmp_path / "Video.txt"
    video.write_text("".join(f"{u} {i}\n" for u in (1, 2) for i in range(1, 5)))
    assert order_reason(read_games(video)) == ""


def test_a_sequence_candidate_selects_the_same_way_for_a_seed(dataset: Dataset) -> None:
    spec = AutoSpec(candidates=("popularity", "sasrec"))
    settings = replace(SETTINGS, epochs=2)
    first, second = select(dataset, spec, settings), select(dataset, spec, settings)
    assert first.chosen == second.chosen
    assert [c.validation for c in first.candidates] == [c.validation for c in second.candidates]


def test_the_sequence_models_estimate_every_epoch_at_their_measured_rate() -> None:
    from kuberec.components.models import resolve_hparams
    from kuberec.components.train.auto import DataSize, estimate

    ml100k = DataSize(943, 1682, 98_114, 2.4e7, np.zeros(1682), True)  # loo's fit part
    measured = {"sasrec": 8.4e-5, "gru4rec": 5.9e-5}  # CPU-s per interaction and epoch
    for name, rate in measured.items():
        seconds = estimate(name, resolve_hparams(name), ml100k, replace(SETTINGS, epochs=30))[0]
        assert 30 * 98_114 * rate <= seconds <= 1.2 * 30 * 98_114 * rate


def test_a_full_softmax_sequence_estimate_grows_with_the_catalogue() -> None:
    from kuberec.components.models import resolve_hparams
    from kuberec.components.train.auto import DataSize, estimate

    def seconds(n_items: int, loss: str) -> float:
        size = DataSize(31_013, n_items, 225_305, 1e8, np.zeros(n_items), True)
        return estimate("sasrec", resolve_hparams("sasrec", {"loss": loss}), size, SETTINGS)[0]

    # Amazon Games' size: a softmax over 23,715 items per position, ~14x ml-100k's
    assert seconds(23_715, "ce") > 5 * seconds(1_682, "ce")
    assert seconds(23_715, "bce") == seconds(1_682, "bce")  # one negative: no catalogue term
    # the default loss samples on Games' catalogue and is the full softmax on ml-100k's
    assert seconds(23_715, "auto") == seconds(23_715, "sampled_ce")
    assert seconds(1_682, "auto") == seconds(1_682, "ce")


def test_a_crashing_candidate_is_recorded_and_the_others_go_on(
    dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = auto_module.build_model

    def crash_on_ease(name: str, *args: object, **kwargs: object) -> object:
        if name == "ease":
            raise RuntimeError("injected failure")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auto_module, "build_model", crash_on_ease)
    selection = select(dataset, AutoSpec(candidates=("ease", "popularity")), SETTINGS)
    ease = selection.candidates[0]
    assert ease.status == "failed" and ease.reason == "RuntimeError: injected failure"
    assert selection.chosen == "popularity"


def test_when_no_candidate_fits_one_line_names_each_reason(dataset: Dataset) -> None:
    spec = AutoSpec(candidates=("ease", "item_knn"), memory_gib=1e-6)
    with pytest.raises(ConfigError) as error:
        select(dataset, spec, SETTINGS)
    message = str(error.value)
    assert "\n" not in message and "ease: needs" in message and "item_knn: needs" in message
    assert "budgetSeconds" in message and "model.type" in message


def test_unknown_candidates_are_refused_with_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown model type 'deepfm'; valid"):
        AutoSpec(candidates=("deepfm",))


def test_the_run_records_the_selection_and_serves_the_winner(
    dataset: Dataset, tmp_path: Path
) -> None:
    summary = train_run(dataset, tmp_path / "run", settings=SETTINGS, auto=FAST)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert metrics["selection"]["chosen"] == summary.model_type == config["model_type"]
    assert len(metrics["selection"]["candidates"]) == len(FAST.candidates)
    assert metrics["data"]["interactions"] == len(dataset.interactions)  # refit on all of it


def test_hyperparameters_need_a_named_type(dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hyperparameters \['lam'\] need a model type"):
        train_run(dataset, tmp_path / "run", hparams={"lam": 5.0}, settings=SETTINGS)


def test_auto_is_the_job_default() -> None:
    model = ModelSpec()
    assert model.type == "auto" and "sparse_ease" in model.auto.candidates


@pytest.mark.slow
def test_kuberec_train_prints_the_selection_table(dataset: Dataset, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    dataset.interactions.to_csv(events, index=False)
    result = kuberec(
        "train",
        "--interactions",
        str(events),
        "--candidates",
        "sparse_ease,popularity",
        "--out",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "model auto: chose" in result.stdout and "sparse_ease" in result.stdout


def test_item_knn_on_a_million_items_is_estimated_by_its_pairs_not_the_catalogue_squared() -> None:
    from kuberec.components.models import resolve_hparams
    from kuberec.components.train.auto import DataSize, estimate

    hparams = resolve_hparams("item_knn")
    million = DataSize(200_000, 1_000_000, 3_000_000, 1.5e8, np.zeros(1), True)
    seconds, memory_mb = estimate("item_knn", hparams, million, SETTINGS)
    assert seconds < 300 and memory_mb < 4096  # measured: 55 CPU-s, 1.8 GB peak


@pytest.mark.parametrize("name", ["multvae", "bivae"])
def test_autoencoders_are_candidates_where_their_dense_layers_fit(
    dataset: Dataset, name: str
) -> None:
    from kuberec.components.models import resolve_hparams
    from kuberec.components.train.auto import DataSize, estimate

    def gib(n_items: int) -> float:
        size = DataSize(200_000, n_items, 3_000_000, 1e8, np.zeros(n_items), True)
        return estimate(name, resolve_hparams(name), size, SETTINGS)[1] / 1024

    assert gib(20_000) < AutoSpec().memory_gib < gib(1_000_000)
    spec = AutoSpec(candidates=(name, "popularity"), budget_seconds=600)
    row = select(dataset, spec, replace(SETTINGS, epochs=2)).candidates[0]
    assert row.status in ("trained", "chosen") and row.validation["ndcg"] > 0


def test_a_later_candidate_that_is_clearly_better_wins() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400)
    chosen, reason = one_standard_error_choice(["a", "b"], {"a": base, "b": base + 0.05})
    assert (chosen, reason) == ("b", "")


def test_an_earlier_candidate_within_one_standard_error_of_the_best_is_chosen() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400)
    noisy = base + rng.normal(0.0, 0.1, 400) + 0.001  # better by far less than its spread
    chosen, reason = one_standard_error_choice(["a", "b"], {"a": base, "b": noisy})
    assert noisy.mean() > base.mean()
    assert chosen == "a" and "within one standard error" in reason and "b's" in reason
