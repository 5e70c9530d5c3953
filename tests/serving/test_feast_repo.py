"""A serving pod renders the pipeline's Feast repo from the environment the operator gives it,
and its feedback reaches the store the pipeline filled (production profile: Redis + PostgreSQL
registry, both running here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.features.store import StoreSettings
from kuberec.errors import ConfigError
from kuberec.pipelines.features_step import run_features
from kuberec.serving.feast_repo import FEAST_REPO_ENV, PROFILE_ENV, PROJECT_ENV, feast_repo
from kuberec.serving.feedback_push import OnlinePusher
from kuberec.serving.feedback_sink import Event
from kuberec.serving.online_features import OnlineHistory


@pytest.fixture(autouse=True)
def fresh() -> None:
    feast_repo.cache_clear()


def test_a_pod_renders_the_pipelines_repo_and_its_clicks_reach_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = f"pod_{uuid.uuid4().hex[:6]}"
    pipeline = StoreSettings(tmp_path / "pipeline" / "data", profile="production", project=project)
    run_features(generate(SyntheticSpec(30, 40, 600, seed=3)), pipeline, text_embeddings=False)
    pod_repo = tmp_path / "pod" / "feature_repo"  # nothing of the pipeline's pod is here
    monkeypatch.setenv(FEAST_REPO_ENV, str(pod_repo))
    monkeypatch.setenv(PROJECT_ENV, project)
    monkeypatch.setenv(PROFILE_ENV, "production")
    assert feast_repo() == pod_repo and (pod_repo / "feature_store.yaml").exists()
    OnlinePusher(pod_repo).push([Event("r-1", "3", "7", "click", "v1", datetime.now(UTC))])
    assert OnlineHistory(pipeline.repo_dir).recent_items(["3"])["3"][-1] == "7"


def test_a_local_repo_is_opened_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FEAST_REPO_ENV, str(tmp_path / "repo"))
    monkeypatch.delenv(PROJECT_ENV, raising=False)
    assert feast_repo() == tmp_path / "repo"
    assert not (tmp_path / "repo").exists()  # rendered by the pipeline, never here


def test_a_repo_to_render_outside_a_feature_repo_folder_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FEAST_REPO_ENV, str(tmp_path / "elsewhere"))
    monkeypatch.setenv(PROJECT_ENV, "movies")
    with pytest.raises(ConfigError, match=FEAST_REPO_ENV):
        feast_repo()
