"""The feedback queue and the rule for bad input: requests never wait, losses are counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kuberec.api.spec import FeedbackSpec
from kuberec.components.datasets.feedback import read_sink
from kuberec.errors import ConfigError
from kuberec.serving.feedback_loop import FeedbackLoop, Rejected
from kuberec.serving.feedback_settings import QUEUE_ENV, SINK_ENV, feedback_env
from kuberec.serving.feedback_sink import Event, ParquetSink
from kuberec.serving.online_features import FEAST_REPO_ENV


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class StuckStore:
    """An online store that hangs until released (a Redis that stopped answering)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.pushed: list[Event] = []

    def push(self, events: Sequence[Event]) -> int:
        self.release.wait(30)
        self.pushed.extend(events)
        return len(events)


def _accept(
    loop: FeedbackLoop,
    item: str = "5",
    *,
    user: bool = True,
    known: bool = True,
    request: str = "r-1",
) -> None:
    loop.accept(request, "3", item, "click", "run-a", known_user=user, known_item=known)


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    store = StuckStore()
    loop = FeedbackLoop(store, None, queue_size=2)  # type: ignore[arg-type]
    dropped = _metric("kuberec_feedback_dropped_total", reason="queue_full")
    started = time.perf_counter()
    for i in range(20):
        _accept(loop, str(i))
    assert time.perf_counter() - started < 1.0  # never blocked on the stuck store
    # one event is with the store, two wait in the queue: the other 17 are counted
    assert _metric("kuberec_feedback_dropped_total", reason="queue_full") - dropped >= 17
    store.release.set()
    loop.close()
    assert 1 <= len(store.pushed) <= 3


def test_an_unknown_item_is_refused_and_counted(tmp_path: Path) -> None:
    loop = FeedbackLoop(None, ParquetSink(str(tmp_path)))
    before = _metric("kuberec_feedback_flagged_total", reason="unknown_item", outcome="rejected")
    with pytest.raises(Rejected) as refused:
        _accept(loop, "no-such-item", known=False)
    assert refused.value.field == "item_id"
    assert (
        _metric("kuberec_feedback_flagged_total", reason="unknown_item", outcome="rejected")
        == before + 1
    )
    loop.close()
    assert read_sink(str(tmp_path)).empty  # nothing stored for it


def test_an_unknown_user_is_accepted_and_counted(tmp_path: Path) -> None:
    loop = FeedbackLoop(None, ParquetSink(str(tmp_path)))
    before = _metric("kuberec_feedback_flagged_total", reason="unknown_user", outcome="accepted")
    _accept(loop, user=False)
    loop.close()
    assert (
        _metric("kuberec_feedback_flagged_total", reason="unknown_user", outcome="accepted")
        == before + 1
    )
    assert len(read_sink(str(tmp_path))) == 1


def test_an_unknown_request_id_is_stored_as_such(tmp_path: Path) -> None:
    loop = FeedbackLoop(None, ParquetSink(str(tmp_path)))
    loop.served("r-served", "3", [5, 6], "run-a")
    _accept(loop, request="r-served")
    _accept(loop, request="r-made-up")
    loop.close()
    stored = read_sink(str(tmp_path)).set_index("request_id")["request_known"]
    assert stored.to_dict() == {"r-served": True, "r-made-up": False}


def test_served_items_are_stored_as_impressions_when_asked(tmp_path: Path) -> None:
    loop = FeedbackLoop(None, ParquetSink(str(tmp_path)), impressions=True)
    loop.served("r-1", "3", [5, 6], "run-a")
    loop.close()
    stored = read_sink(str(tmp_path))
    assert sorted(stored["item_id"]) == ["5", "6"]
    assert set(stored["event"]) == {"impression"}


def test_synthetic_traffic_is_counted_but_neither_pushed_nor_stored(tmp_path: Path) -> None:
    store = StuckStore()
    store.release.set()
    loop = FeedbackLoop(store, ParquetSink(str(tmp_path)), impressions=True)  # type: ignore[arg-type]
    before = _metric("kuberec_feedback_synthetic_total")
    loop.served("r-canary", "3", [5, 6], "run-a", synthetic=True)
    loop.accept(
        "r-canary", "3", "5", "click", "run-a", known_user=True, known_item=True, synthetic=True
    )
    _accept(loop, request="r-user")
    loop.close()
    assert _metric("kuberec_feedback_synthetic_total") == before + 1
    assert [e.request_id for e in store.pushed] == ["r-user"]
    assert list(read_sink(str(tmp_path))["request_id"]) == ["r-user"]


def test_synthetic_feedback_on_an_unknown_item_is_still_refused(tmp_path: Path) -> None:
    loop = FeedbackLoop(None, ParquetSink(str(tmp_path)))
    with pytest.raises(Rejected):
        loop.accept(
            "r-1", "3", "nope", "click", "run-a", known_user=True, known_item=False, synthetic=True
        )
    loop.close()


def test_a_sink_that_cannot_be_written_never_reaches_the_request_side(tmp_path: Path) -> None:
    blocked = tmp_path / "volume"
    blocked.write_text("a file where the sink's folder should be")
    sink = ParquetSink(str(blocked / "sink"), flush_s=0.0)
    loop = FeedbackLoop(None, sink)
    errors = _metric("kuberec_feedback_sink_errors_total")
    for i in range(50):
        _accept(loop, str(i))  # returns at once, raises nothing
    deadline = time.monotonic() + 10
    while _metric("kuberec_feedback_sink_errors_total") == errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _metric("kuberec_feedback_sink_errors_total") > errors
    assert loop._thread.is_alive()  # the failure did not end the pusher
    loop.close()
    assert sink.backlog == 50  # kept for the next try


def test_the_jobs_spec_feedback_configures_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = FeedbackSpec(sink=str(tmp_path / "sink"), push=False, impressions=True, queue_size=7)
    for name, value in feedback_env(spec, spec.sink).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(FEAST_REPO_ENV, str(tmp_path / "repo"))
    loop = FeedbackLoop.from_env()
    assert loop is not None
    assert (loop.sink.uri, loop.impressions, loop._queue.maxsize) == (spec.sink, True, 7)
    assert loop._repo is None  # push: false
    loop.close()


def test_a_queue_bound_that_is_no_count_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SINK_ENV, "/tmp/anywhere")
    monkeypatch.setenv(QUEUE_ENV, "lots")
    with pytest.raises(ConfigError, match=f"{QUEUE_ENV}: must be a number"):
        FeedbackLoop.from_env()
