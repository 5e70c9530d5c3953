"""spec.data.feedback: the sink's events become training data, and retrainOn counts them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberec.api.spec import RecommenderJob, load_job
from kuberec.api.status import JobStatus
from kuberec.components.datasets.feedback import with_feedback
from kuberec.components.datasets.sources import load_source
from kuberec.errors import ConfigError
from kuberec.operator.local.platform import LocalPlatform
from kuberec.operator.reconcile import training_trigger
from kuberec.serving.feedback_sink import Event, ParquetSink

SYNTHETIC = {"users": 30, "items": 40, "interactions": 600, "seed": 3}


def _job(tmp_path: Path, include: bool = True, **feedback: Any) -> RecommenderJob:
    return RecommenderJob.model_validate({
        "apiVersion": "kuberec.io/v1alpha1", "kind": "RecommenderJob",
        "metadata": {"name": "loop"},
        "spec": {
            "data": {"synthetic": SYNTHETIC, "feedback": {"include": include, **feedback}},
            "feedback": {"sink": str(tmp_path / "sink")},
            "training": {"retrainOn": {"minNewInteractions": 3}},
        },
    })  # fmt: skip


def _store(tmp_path: Path, *events: tuple[str, str, str]) -> None:
    sink = ParquetSink(str(tmp_path / "sink"))
    now = datetime.now(UTC)
    sink.add(
        [
            Event(f"r-{i}", user, item, kind, "run-a", now)
            for i, (user, item, kind) in enumerate(events)
        ]
    )
    assert sink.flush()


def test_clicks_and_purchases_join_the_data_rated_by_their_weight(tmp_path: Path) -> None:
    job = _job(tmp_path, weight=2.0)
    _store(tmp_path, ("1", "2", "click"), ("1", "3", "purchase"), ("1", "4", "impression"))
    base = load_source(job.spec.data)
    data = with_feedback(base, job.spec)
    added = data.interactions.iloc[len(base.interactions) :]
    assert added[["user_id", "item_id"]].values.tolist() == [[1, 2], [1, 3]]
    assert added["rating"].tolist() == [2.0, 2.0]
    assert data.interactions["user_id"].dtype == base.interactions["user_id"].dtype


def test_only_the_events_asked_for_are_read(tmp_path: Path) -> None:
    job = _job(tmp_path, events=["purchase"])
    _store(tmp_path, ("1", "2", "click"), ("1", "3", "purchase"))
    base = load_source(job.spec.data)
    assert len(with_feedback(base, job.spec).interactions) == len(base.interactions) + 1


def test_items_outside_the_catalogue_and_ids_of_another_kind_are_left_out(tmp_path: Path) -> None:
    job = _job(tmp_path)
    _store(tmp_path, ("1", "99999", "click"), ("someone", "2", "click"), ("1", "2", "click"))
    base = load_source(job.spec.data)
    assert len(with_feedback(base, job.spec).interactions) == len(base.interactions) + 1


def test_a_new_user_in_the_feedback_joins_the_users(tmp_path: Path) -> None:
    job = _job(tmp_path)
    _store(tmp_path, ("777", "2", "click"))
    assert 777 in set(with_feedback(load_source(job.spec.data), job.spec).users["user_id"])


def test_without_include_the_sink_is_not_read(tmp_path: Path) -> None:
    job = _job(tmp_path, include=False)
    _store(tmp_path, ("1", "2", "click"))
    base = load_source(job.spec.data)
    assert with_feedback(base, job.spec) is base


def test_include_without_a_sink_is_refused_when_the_job_loads(tmp_path: Path) -> None:
    document = _job(tmp_path).model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["feedback"].pop("sink")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=r"spec: data.feedback.include .* set feedback.sink"):
        load_job(tmp_path / "job.yaml")


def test_the_job_retrains_once_its_own_traffic_reaches_min_new_interactions(tmp_path: Path) -> None:
    job = _job(tmp_path)
    platform = LocalPlatform(tmp_path / "work", serve=False)
    trained = platform.observe_data(job)
    status = JobStatus.model_validate(
        {
            "champion": {
                "version": "loop:v1",
                "uri": "file:///m",
                "modelType": "ease_t",
                "lineage": {
                    "specHash": _spec_hash(job),
                    "datasetDigest": trained.digest,
                    "interactions": trained.interactions,
                    "pipelineRun": "r",
                    "codeVersion": "0",
                    "trainedAt": datetime.now(UTC).isoformat(),
                },
            }
        }
    )
    assert _trigger(job, status, platform) is None
    _store(tmp_path, ("1", "2", "click"), ("1", "3", "click"))  # 2 < minNewInteractions 3
    assert platform.observe_data(job).interactions == trained.interactions + 2
    assert _trigger(job, status, platform) is None
    _store(tmp_path, ("2", "3", "purchase"))
    assert _trigger(job, status, platform) == "new data (+3 interactions)"


def _spec_hash(job: RecommenderJob) -> str:
    from kuberec.api.spec import spec_hash

    return spec_hash(job.spec)


def _trigger(job: RecommenderJob, status: JobStatus, platform: LocalPlatform) -> str | None:
    from kuberec.operator.observations import Observations

    return training_trigger(
        job, status, Observations(datetime.now(UTC), platform.observe_data(job))
    )
