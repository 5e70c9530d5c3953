"""Cheap data observation in a cluster: a fingerprint of the interactions file and of the
feedback sink the serving pods write, not a digest."""

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
from kuberec.serving.feedback_sink import Event, ParquetSink
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


def feedback_job(sink: str, data: dict, min_new: int) -> RecommenderJob:
    return recommender_job(
        "shop",
        {
            "data": {**data, "feedback": {"include": True, "events": ["click"]}},
            "feedback": {"sink": sink},
            "training": {"retrainOn": {"minNewInteractions": min_new}},
        },
    )


def store(sink: str, clicks: int, impressions: int = 0) -> None:
    """Events as the serving pods write them (one flush: one new file)."""
    now = datetime.now(UTC)
    events = [Event(f"r{i}", "1", "2", "click", "shop:v1", now) for i in range(clicks)]
    events += [Event(f"i{i}", "1", "2", "impression", "shop:v1", now) for i in range(impressions)]
    written = ParquetSink(sink)
    written.add(events)
    assert written.flush()


def test_the_feedback_sink_is_watched_for_a_job_trained_on_a_fixed_release(tmp_path: Path) -> None:
    sink = (tmp_path / "sink").as_uri()
    j = feedback_job(sink, {"movielens": "ml-100k"}, min_new=30)
    watcher = DataWatcher(poll_s=0)
    store(sink, 10)
    launched = watcher.observe(j, JobStatus(), None)
    assert launched is not None
    fingerprint = launched.digest[3:]  # what the platform annotates the job with at launch
    data, trigger = observe(j, trained(j, 1000), watcher, fingerprint)
    assert data is not None and data.digest == "sha-of-content" and trigger is None
    store(sink, 20, impressions=500)  # impressions are no interactions
    _, trigger = observe(j, trained(j, 1000), watcher, fingerprint)
    assert trigger is None  # 20 new clicks < 30
    store(sink, 15)
    data, trigger = observe(j, trained(j, 1000), watcher, fingerprint)
    assert data is not None and data.interactions == 1035
    assert trigger == "new data (+35 interactions)"


def test_a_sink_beside_an_interactions_file_adds_its_events_to_the_files_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.parquet"
    write(path, 100)
    sink = (tmp_path / "sink").as_uri()
    j = feedback_job(sink, {"interactions": {"uri": path.as_uri()}}, min_new=10)
    watcher = DataWatcher(poll_s=0)
    fingerprint = watcher.observe(j, JobStatus(), None).digest[3:]  # type: ignore[union-attr]
    store(sink, 12)
    data, trigger = observe(j, trained(j, 100), watcher, fingerprint)
    assert data is not None and data.interactions == 112
    assert trigger == "new data (+12 interactions)"


def test_a_sink_path_that_is_not_a_uri_is_not_watched(tmp_path: Path) -> None:
    j = feedback_job("feedback", {"movielens": "ml-100k"}, min_new=1)
    assert DataWatcher().observe(j, JobStatus(), None) is None


def test_an_unreadable_sink_file_counts_no_events_and_stops_nothing(tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    store(sink.as_uri(), 5)
    (sink / "date=2026-01-01").mkdir(parents=True)
    (sink / "date=2026-01-01" / "part-broken.parquet").write_bytes(b"not parquet")
    _, events = DataWatcher(poll_s=0).sink_fingerprint(sink.as_uri(), ["click"])
    assert events == 5


def test_compacting_the_sink_is_not_new_data(tmp_path: Path) -> None:
    from datetime import date, timedelta

    from kuberec.components.datasets.feedback_compaction import compact_sink

    sink = tmp_path / "sink"
    for _ in range(3):
        store(sink.as_uri(), 10, impressions=5)
    before = DataWatcher(poll_s=0).sink_fingerprint(sink.as_uri(), ["click"])
    (day,) = (date.fromisoformat(p.name.removeprefix("date=")) for p in sink.iterdir())
    assert compact_sink(sink.as_uri(), today=day + timedelta(days=1)).days == {str(day): 3}
    assert DataWatcher(poll_s=0).sink_fingerprint(sink.as_uri(), ["click"]) == before
    assert before[1] == 30
