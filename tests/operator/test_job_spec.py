"""RecommenderJob files: valid ones load, mistakes name the field path and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberec.api.spec import load_job
from kuberec.errors import ConfigError
from tests.support.jobs import job_yaml
from tests.support.paths import ROOT

HEADER = job_yaml("demo")


def _job(tmp_path: Path, spec: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(HEADER + spec)
    return path


def test_the_example_job_is_valid() -> None:
    job = load_job(ROOT / "examples" / "movielens-100k.yaml")
    assert job.spec.data.movielens == "ml-100k"
    assert job.spec.features.text_embeddings is True


def test_two_data_sources_are_refused(tmp_path: Path) -> None:
    path = _job(
        tmp_path,
        "spec:\n  data:\n    movielens: ml-100k\n    interactions: {uri: x.csv}\n",
    )
    with pytest.raises(ConfigError, match=r"spec.data: set exactly one of"):
        load_job(path)


def test_an_unknown_field_is_named(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n  featurez: {}\n")
    with pytest.raises(ConfigError, match=r"spec.featurez: unknown field"):
        load_job(path)


def test_a_number_below_its_minimum_names_the_rule(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data:\n    synthetic: {users: 0, items: 5, interactions: 9}\n")
    rule = r"spec.data.synthetic.users: .*greater than or equal to 1"
    with pytest.raises(ConfigError, match=rule):
        load_job(path)


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(job_yaml("Demo_Job") + "spec:\n  data: {movielens: ml-100k}\n")
    with pytest.raises(ConfigError, match=r"metadata.name"):
        load_job(path)


def test_not_yaml_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("spec: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job(path)


def test_canary_steps_must_increase(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                          "  serving: {canary: {steps: [10, 50, 25]}}\n")  # fmt: skip
    rule = r"spec.serving.canary: steps: must be strictly increasing"
    with pytest.raises(ConfigError, match=rule):
        load_job(path)


def test_a_canary_step_above_100_percent_is_refused(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                          "  serving: {canary: {steps: [10, 150]}}\n")  # fmt: skip
    rule = r"spec.serving.canary.steps.1: .*less than or equal to 100"
    with pytest.raises(ConfigError, match=rule):
        load_job(path)


def test_a_gate_on_an_unknown_metric_lists_the_metrics(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                          "  evaluation: {gates: {minMetrics: {auc@10: 0.5}}}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"spec.evaluation: gates.minMetrics: 'auc@10' .*ndcg@K"):
        load_job(path)


def test_the_local_backend_refuses_several_workers(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                          "  training: {backend: local, workers: 2}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"spec.training: the local backend runs one worker"):
        load_job(path)


def test_a_malformed_interval_names_the_pattern(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                          "  serving: {canary: {interval: soon}}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"spec.serving.canary.interval: .*pattern"):
        load_job(path)


def test_camel_case_fields_map_to_the_python_names(tmp_path: Path) -> None:
    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                          "  training: {retrainOn: {minNewInteractions: 500},"
                          " schedule: '0 3 * * *'}\n")  # fmt: skip
    training = load_job(path).spec.training
    assert training.retrain_on.min_new_interactions == 500 and training.schedule == "0 3 * * *"


def test_the_averaging_period_reaches_the_training_settings(tmp_path: Path) -> None:
    from kuberec.components.train.settings import TrainSettings

    path = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                          "  training: {workers: 2, averagingPeriod: 8}\n")  # fmt: skip
    training = load_job(path).spec.training
    assert TrainSettings.from_spec(training).averaging_period == 8


def test_spelling_out_a_default_does_not_change_the_spec_hash(tmp_path: Path) -> None:
    """A release that adds a field with a default must not retrain every job."""
    from kuberec.api.spec import spec_hash

    bare = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n")
    first = spec_hash(load_job(bare).spec)
    explicit = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                              "  training: {averagingPeriod: 1, epochs: 20}\n")  # fmt: skip
    assert spec_hash(load_job(explicit).spec) == first
    changed = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                             "  training: {averagingPeriod: 4}\n")  # fmt: skip
    assert spec_hash(load_job(changed).spec) != first


def test_a_ranking_weight_out_of_range_names_the_field_path(tmp_path: Path) -> None:
    path = _job(
        tmp_path, "spec:\n  data: {movielens: ml-100k}\n  serving:\n    ranking: {diversity: 1.5}\n"
    )
    with pytest.raises(ConfigError, match=r"spec\.serving\.ranking\.diversity: Input should be"):
        load_job(path)


def test_a_ranking_declares_pins_and_exclusions_by_item_id(tmp_path: Path) -> None:
    path = _job(
        tmp_path,
        "spec:\n  data: {movielens: ml-100k}\n  serving:\n    ranking:\n"
        "      diversity: 0.2\n      maxPerCategory: 3\n"
        "      pinned: [50, sku-7]\n      excluded: [181]\n",
    )
    ranking = load_job(path).spec.serving.ranking
    assert (ranking.diversity, ranking.max_per_category) == (0.2, 3)
    assert ranking.pinned == [50, "sku-7"] and ranking.excluded == [181]


@pytest.mark.parametrize(
    ("model", "rule"),
    [
        ("{type: ease, hyperparameters: {lam: -300}}", r"spec.model: ease hyperparameter 'lam': "),
        ("{type: deepfm}", r"spec.model: unknown model type 'deepfm'; valid: \[.*'ease_t'"),
        (
            "{type: mf, hyperparameters: {dimension: 8}}",
            r"spec.model: unknown hyperparameter\(s\) \['dimension'\] for model type 'mf'",
        ),
        ("{hyperparameters: {lam: 0}}", r"spec.model: hyperparameters \['lam'\] need a model type"),
        ("{auto: {candidates: [ease, deepfm]}}", r"spec.model: unknown model type 'deepfm'"),
        ("{type: sasrec, hyperparameters: {dim: 10, nHeads: 3}}", r"unknown hyperparameter"),
        ("{type: sasrec, hyperparameters: {dim: 10, n_heads: 3}}", r"'n_heads': must divide"),
    ],
    ids=[
        "out-of-range",
        "unknown-type",
        "unknown-key",
        "auto-with-hyperparameters",
        "unknown-candidate",
        "camel-key",
        "cross",
    ],
)
def test_model_type_and_hyperparameters_are_checked_when_the_job_loads(
    tmp_path: Path, model: str, rule: str
) -> None:
    """Not after ingest and features ran: the registry's own rules, at load."""
    path = _job(tmp_path, f"spec:\n  data: {{movielens: ml-100k}}\n  model: {model}\n")
    with pytest.raises(ConfigError, match=rule):
        load_job(path)


def test_a_negative_min_improvement_needs_allow_regression(tmp_path: Path) -> None:
    refused = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                             "  evaluation: {gates: {minImprovement: -0.05}}\n")  # fmt: skip
    with pytest.raises(
        ConfigError,
        match=r"spec.evaluation.gates: minImprovement -0.05 lets a "
        r"worse model replace the champion; set "
        r"gates.allowRegression: true",
    ):
        load_job(refused)
    allowed = _job(tmp_path, "spec:\n  data: {movielens: ml-100k}\n"
                             "  evaluation: {gates: {minImprovement: -0.05, "
                             "allowRegression: true}}\n")  # fmt: skip
    assert load_job(allowed).spec.evaluation.gates.min_improvement == -0.05


def test_a_promoted_regression_says_so_in_the_gate_reasons() -> None:
    from kuberec.components.train.gate import Gate, decide

    decision = decide(Gate("ndcg@10", min_improvement=-0.05), {"ndcg@10": 0.29}, {"ndcg@10": 0.3})
    assert decision.accepted
    assert decision.reasons[-1].endswith("worse than the champion, allowed by "
                                         "gates.allowRegression")  # fmt: skip
