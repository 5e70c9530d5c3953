"""Compacting the feedback sink: each closed day becomes one file, and no reader can tell."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from kuberec.cli import main
from kuberec.components.datasets.feedback import read_sink
from kuberec.components.datasets.feedback_compaction import compact_sink
from kuberec.serving.feedback_sink import Event, ParquetSink

TODAY = date(2026, 1, 3)


def _flush(sink: Path, day: date, flushes: int = 3, events: int = 4, tag: str = "") -> None:
    writer = ParquetSink(str(sink))
    start = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    for f in range(flushes):
        writer.add([
            Event(f"r{tag}{day}-{f}-{i}", str(i), str(10 + i), "click", "v1",
                  start + timedelta(minutes=f * events + i))
            for i in range(events)
        ])  # fmt: skip
        assert writer.flush()


def _sink(tmp_path: Path) -> Path:
    sink = tmp_path / "sink"
    for day in (date(2026, 1, 1), date(2026, 1, 2), TODAY):
        _flush(sink, day)
    return sink


def _files(sink: Path, day: date) -> list[str]:
    return sorted(p.name for p in (sink / f"date={day}").iterdir())


def test_compaction_leaves_every_row_as_it_was(tmp_path: Path) -> None:
    sink = _sink(tmp_path)
    before = read_sink(str(sink))
    compact_sink(str(sink), today=TODAY)
    assert read_sink(str(sink)).equals(before)


def test_each_closed_day_becomes_one_file(tmp_path: Path) -> None:
    sink = _sink(tmp_path)
    result = compact_sink(str(sink), today=TODAY)
    assert result.days == {"2026-01-01": 3, "2026-01-02": 3}
    assert result.rows == {"2026-01-01": 12, "2026-01-02": 12}
    for day in (date(2026, 1, 1), date(2026, 1, 2)):
        (name,) = _files(sink, day)
        assert name.startswith("compacted-")


def test_todays_partition_is_left_alone(tmp_path: Path) -> None:
    sink = _sink(tmp_path)
    files = _files(sink, TODAY)
    compact_sink(str(sink), today=TODAY)
    assert _files(sink, TODAY) == files


def test_an_interrupted_compaction_keeps_every_row_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = _sink(tmp_path)
    before = read_sink(str(sink))
    removed = LocalFileSystem.rm
    calls = []

    def crash_on_the_second_delete(
        self: LocalFileSystem, path: str, *a: object, **k: object
    ) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("killed")
        removed(self, path, *a, **k)

    monkeypatch.setattr(LocalFileSystem, "rm", crash_on_the_second_delete)
    with pytest.raises(OSError, match="killed"):
        compact_sink(str(sink), today=TODAY)
    assert read_sink(str(sink)).equals(before)  # the compacted file and two parts: once each
    monkeypatch.setattr(LocalFileSystem, "rm", removed)
    compact_sink(str(sink), today=TODAY)  # the next run deletes the leftovers
    assert read_sink(str(sink)).equals(before)
    assert len(_files(sink, date(2026, 1, 1))) == len(_files(sink, date(2026, 1, 2))) == 1


def test_a_half_written_compacted_file_is_not_read(tmp_path: Path) -> None:
    sink = _sink(tmp_path)
    before = read_sink(str(sink))
    (sink / "date=2026-01-01" / ".compacted-1-x.parquet").write_bytes(b"PAR1 cut short")
    assert read_sink(str(sink)).equals(before)


def test_a_late_flush_into_a_compacted_day_is_read_and_folded_in_next_time(
    tmp_path: Path,
) -> None:
    sink = _sink(tmp_path)
    compact_sink(str(sink), today=TODAY)
    _flush(sink, date(2026, 1, 1), flushes=1, tag="late")  # a pod's backlog after an outage
    assert len(read_sink(str(sink))) == 3 * 12 + 4
    assert compact_sink(str(sink), today=TODAY).days == {"2026-01-01": 2}
    assert len(read_sink(str(sink))) == 3 * 12 + 4
    assert len(_files(sink, date(2026, 1, 1))) == 1


def test_kuberec_data_compact_feedback_reports_the_days_it_compacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = _sink(tmp_path)
    assert main(["data", "compact-feedback", str(sink), "--today", str(TODAY)]) == 0
    out = capsys.readouterr().out
    assert "2026-01-01: 3 files -> 1 (12 rows)" in out
    assert "2 days compacted, 6 files removed" in out
