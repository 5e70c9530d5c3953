"""The Parquet sink: day partitions with event type and model version; failures never raise."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kuberec.components.datasets.feedback import read_sink
from kuberec.serving.feedback_sink import Event, ParquetSink


def _event(day: int, item: str = "5", event: str = "click") -> Event:
    return Event("r-1", "3", item, event, "run-a", datetime(2026, 12, day, 12, tzinfo=UTC))


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_events_land_in_one_folder_per_day_with_type_and_model_version(tmp_path: Path) -> None:
    sink = ParquetSink(str(tmp_path / "sink"))
    sink.add([_event(1), _event(2, "6", "purchase"), _event(2, "7", "impression")])
    assert sink.flush()
    assert sorted(p.name for p in (tmp_path / "sink").iterdir()) == [
        "date=2026-12-01",
        "date=2026-12-02",
    ]
    stored = read_sink(str(tmp_path / "sink")).sort_values("item_id")
    assert stored["event"].tolist() == ["click", "purchase", "impression"]
    assert set(stored["model_version"]) == {"run-a"}
    assert not list((tmp_path / "sink").rglob(".*"))  # no half-written file is left


def test_each_flush_adds_a_file_and_keeps_the_earlier_ones(tmp_path: Path) -> None:
    sink = ParquetSink(str(tmp_path / "sink"))
    for day in (1, 1):
        sink.add([_event(day)])
        sink.flush()
    assert len(list((tmp_path / "sink").rglob("*.parquet"))) == 2
    assert len(read_sink(str(tmp_path / "sink"))) == 2


def test_an_unwritable_sink_keeps_the_events_counts_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "volume"
    blocked.write_text("a file where the sink's folder should be")  # writes fail, even as root
    sink = ParquetSink(str(blocked / "sink"))
    errors = _metric("kuberec_feedback_sink_errors_total")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            sink.add([_event(1)])
            assert sink.flush() is False
    assert _metric("kuberec_feedback_sink_errors_total") == errors + 3
    assert len([r for r in caplog.records if "cannot be written" in r.message]) == 1
    assert sink.backlog == 3
    blocked.unlink()  # the volume is back: nothing was lost
    assert sink.flush()
    assert len(read_sink(str(blocked / "sink"))) == 3


def test_a_backlog_over_its_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    sink = ParquetSink(str(tmp_path / "sink"), max_backlog=2)
    dropped = _metric("kuberec_feedback_dropped_total", reason="sink_backlog")
    sink.add([_event(1, "1"), _event(1, "2"), _event(1, "3")])
    assert sink.backlog == 2
    assert _metric("kuberec_feedback_dropped_total", reason="sink_backlog") == dropped + 1
    sink.flush()
    assert sorted(read_sink(str(tmp_path / "sink"))["item_id"]) == ["2", "3"]


def test_a_sink_that_does_not_exist_yet_reads_as_no_events(tmp_path: Path) -> None:
    assert read_sink(str(tmp_path / "nothing")).empty
