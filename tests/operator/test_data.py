"""Cheap data observation in a cluster: a fingerprint of the interactions file, not a digest."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus, Lineage, ModelRecord
from kuberec.operator.kubernetes.data import DataWatcher
from kuberec.operator.observations import DataObservation, Observations
from kuberec.operator.reconcile import training_trigger
from tests.support.jobs import recommender_job


def job(uri: str, min_new: int | None = None) -> RecommenderJob:
    training = {"retrainOn": {"minNewInteractions": min_new}} if min_new else {}
    return recommender_job("shop", {"data": {"interactions": {"uri": uri}}, "training": training})


def trained(j: RecommenderJob, interactions: int) -> JobStatus:
    from kuberec.api.spec import spec_hash

    lineage = Lineage(spec_hash=spec_hash(j.spec), dataset_digest="sha-of-content",
                      interactions=interactions, pipeline_run="r", code_version="0",
                      trained_at="2026-01-01T00:00:00+00:00")  # fmt: skip
    champion = ModelRecord(version="shop:v1", uri="file:///m", model_type="ease_t",
                           lineage=lineage)  # fmt: skip
    return JobStatus(champion=champion, last_trained_at="2026-01-01T00:00:00+00:00")


def write(path: Path, rows: int) -> None:
    pd.DataFrame({"user_id": range(rows), "item_id": range(rows)}).to_parquet(path)
    stamp = path.stat().st_mtime + rows  # a distinct mtime per write
    os.utime(path, (stamp, stamp))


def observe(j: RecommenderJob, status: JobStatus, watcher: DataWatcher, trained_fp: str | None
            ) -> tuple[DataObservation | None, str | None]:  # fmt: skip
    data = watcher.observe(j, status, trained_fp)
    return data, training_trigger(j, status, Observations(now=datetime.now(UTC), data=data))


def test_movielens_and_synthetic_data_are_not_observed() -> None:
    j = recommender_job("m", {"data": {"movielens": "ml-100k"}})
    assert DataWatcher().observe(j, JobStatus(), None) is None


def test_an_unchanged_file_is_the_models_own_data(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    write(path, 100)
    j = job(path.as_uri())
    watcher = DataWatcher(poll_s=0)
    fingerprint, rows = watcher.fingerprint(path.as_uri())
    assert rows == 100
    data, trigger = observe(j, trained(j, 100), watcher, fingerprint)
    assert data is not None and data.digest == "sha-of-content"
    assert trigger is None


def test_a_changed_file_retrains_when_enough_rows_arrived(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    write(path, 100)
    j = job(path.as_uri(), min_new=50)
    watcher = DataWatcher(poll_s=0)
    fingerprint, _ = watcher.fingerprint(path.as_uri())
    write(path, 120)
    _, trigger = observe(j, trained(j, 100), watcher, fingerprint)
    assert trigger is None  # 20 new rows < 50
    write(path, 200)
    data, trigger = observe(j, trained(j, 100), watcher, fingerprint)
    assert data is not None and data.digest.startswith("fp:") and data.interactions == 200
    assert trigger == "new data (+100 interactions)"


def test_a_fingerprint_is_read_at_most_once_per_poll_interval(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    write(path, 10)
    watcher = DataWatcher(poll_s=3600)
    first = watcher.fingerprint(path.as_uri())
    write(path, 20)
    assert watcher.fingerprint(path.as_uri()) == first
