"""The loop on one machine: served traffic becomes features at once and, past
``minNewInteractions``, the next reconcile trains a challenger on data + feedback
that the canary judges. Real processes throughout (kfp.local runs, `bentoml serve`
behind the router, the replayer)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from kuberec.api.spec import RecommenderJob, load_job
from kuberec.api.status import JobStatus
from kuberec.components.datasets.feedback import read_sink
from kuberec.components.evaluation import split
from kuberec.operator.local.loop import run_until_settled
from kuberec.operator.local.platform import LocalPlatform
from kuberec.serving.canary.replay import replay
from kuberec.serving.online_features import OnlineHistory

pytestmark = pytest.mark.slow
MIN_NEW = 20
SPEC = {
    "data": {"synthetic": {"users": 100, "items": 60, "interactions": 2500, "seed": 5},
             "feedback": {"include": True, "events": ["click"]}},
    "feedback": {"sink": "feedback"},
    "features": {"textEmbeddings": False},
    "model": {"type": "ease_t"},
    "training": {"backend": "local", "retrainOn": {"minNewInteractions": MIN_NEW}},
    "evaluation": {"gates": {"minImprovement": -1.0, "allowRegression": True}},
    "serving": {"canary": {"steps": [50, 100], "interval": "3s",
                           "analysis": {"minSamples": 5, "maxP95LatencyMs": 5000,
                                        "minClickThroughRatio": 0.0}}},
}  # fmt: skip


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    workdir = tmp_path_factory.mktemp("loop")
    local = LocalPlatform(workdir, base=workdir, serve=True, replay_rate=25)
    yield local
    local.stop_serving()


@pytest.fixture(scope="module")
def job(platform: LocalPlatform) -> RecommenderJob:
    path = platform.workdir / "job.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "kuberec.io/v1alpha1",
                                    "kind": "RecommenderJob", "metadata": {"name": "loop"},
                                    "spec": SPEC}))  # fmt: skip
    return load_job(path)


@pytest.fixture(scope="module")
def first(job: RecommenderJob, platform: LocalPlatform) -> JobStatus:
    return run_until_settled(job, platform, platform.workdir, poll_s=0.5, timeout_s=900)


@pytest.fixture(scope="module")
def replayed(job: RecommenderJob, platform: LocalPlatform, first: JobStatus) -> dict:
    """Held-out traffic with clicks until the sink holds more than minNewInteractions."""
    data = platform._dataset(job)[0]
    held_out = split("temporal", data.interactions).test
    report = replay(str(first.url), held_out, rate=60, limit=300, k=10)
    sink = str(platform.workdir / "feedback")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the servers write the sink every 5 s
        clicks = read_sink(sink).query("event == 'click'")
        if len(clicks) >= report.clicks:
            break
        time.sleep(0.5)
    return {"report": report, "clicks": clicks}


@pytest.fixture(scope="module")
def second(job: RecommenderJob, platform: LocalPlatform, replayed: dict) -> JobStatus:
    """Retrained on data + feedback, judged by the canary, and settled by itself: the
    canary's own replay is marked synthetic, so its clicks are not new data."""
    return run_until_settled(job, platform, platform.workdir, poll_s=0.5, timeout_s=900)


def test_the_replay_clicks_past_min_new_interactions_land_in_the_sink(replayed: dict) -> None:
    assert replayed["report"].clicks > MIN_NEW
    assert len(replayed["clicks"]) >= replayed["report"].clicks


def test_the_online_features_already_hold_the_clicks(
    platform: LocalPlatform, replayed: dict
) -> None:
    last = replayed["clicks"].sort_values("timestamp").iloc[-1]
    online = OnlineHistory(platform.workdir / "data" / "feature_repo")
    assert str(last["item_id"]) in online.recent_items([last["user_id"]])[str(last["user_id"])]


def test_the_next_reconcile_trains_a_challenger_on_data_and_feedback(
    first: JobStatus, second: JobStatus, replayed: dict
) -> None:
    assert first.champion is not None
    trained = second.last_rollout
    assert trained is not None and trained.outcome in ("Promoted", "RolledBack")
    newest = second.champion if trained.outcome == "Promoted" else second.challenger
    assert newest is not None and newest.version != first.champion.version
    grown = newest.lineage.interactions - first.champion.lineage.interactions
    assert grown >= len(replayed["clicks"])  # every stored click is training data
    assert any("new data" in (h.message or "") for h in second.history)


def test_a_settled_job_stays_settled_after_its_canary_replayed_clicks(
    job: RecommenderJob, platform: LocalPlatform, second: JobStatus, replayed: dict
) -> None:
    stored = read_sink(str(platform.workdir / "feedback")).query("event == 'click'")
    assert len(stored) == len(replayed["clicks"])  # the canary's clicks were not stored
    again = run_until_settled(job, platform, platform.workdir, poll_s=0.5, timeout_s=60)
    assert again.pipeline_run == second.pipeline_run  # no new training
    assert again.champion == second.champion
