"""Canary rollouts on the local platform: real BentoML servers behind the router, on loopback.

One stable server and one router serve the whole module while held-out
ml-100k interactions are replayed at a steady rate in the background (the
online signal). Each test rolls a candidate out with short analysis intervals
and checks what the rollout decided and what the users saw.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.serving.canary.analysis import Thresholds
from kuberec.serving.canary.local import LocalRollout
from kuberec.serving.canary.replay import ReplayReport, replay
from kuberec.serving.canary.steps import RolloutPolicy, StepDecision
from kuberec.serving.processes import ID_ENV, JOB_ENV, marked, process_tree

pytestmark = pytest.mark.slow

INTERVAL_S = 4.0
RATE = 25.0  # requests/s, each with its impressions and clicks
POLICY = RolloutPolicy(
    steps=(25, 50, 100),
    thresholds=Thresholds(
        max_error_rate=0.05,
        max_p95_latency_ms=200.0,
        min_click_through_ratio=0.7,
        min_samples=15,
        on_insufficient_data="Extend",
    ),
    max_extensions=3,
)


@dataclass(frozen=True)
class Runs:
    stable: Path
    candidate: Path
    popularity: Path
    held_out: pd.DataFrame


@pytest.fixture(scope="module")
def runs(ml100k: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """ease_t twice (stable, a good candidate) and popularity, trained on 75 % of each user."""
    from kuberec.components.evaluation.protocols import stratified
    from kuberec.components.train.run import train_run
    from kuberec.components.train.settings import TrainSettings

    split = stratified(ml100k.interactions, seed=42)
    train = replace(ml100k, interactions=split.train.reset_index(drop=True))
    root = tmp_path_factory.mktemp("canary-runs")
    local = TrainSettings(backend="local")
    for name, model_type, hparams in (
        ("ease-a", "ease_t", {}), ("ease-b", "ease_t", {"lam": 200.0}),
        ("popular", "popularity", {}),
    ):  # fmt: skip
        train_run(train, root / name, model_type=model_type, hparams=hparams, settings=local)
    held_out = split.test[["user_id", "item_id", "timestamp"]].reset_index(drop=True)
    return Runs(root / "ease-a", root / "ease-b", root / "popular", held_out)


@pytest.fixture(scope="module")
def platform(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRollout]:
    rollout = LocalRollout(tmp_path_factory.mktemp("serving"), ready_timeout_s=180)
    try:
        rollout.deploy_stable(runs.stable)
        yield rollout
    finally:
        rollout.stop()


@pytest.fixture(scope="module")
def traffic(platform: LocalRollout, runs: Runs) -> Iterator[ReplayReport]:
    """Held-out visits replayed at RATE until the module ends; the report fills live."""
    report, stop = ReplayReport(), threading.Event()
    assert platform.url is not None
    thread = threading.Thread(
        target=replay, args=(platform.url, runs.held_out),
        kwargs={"rate": RATE, "k": 10, "stop": stop, "report": report}, daemon=True,
    )  # fmt: skip
    thread.start()
    try:
        yield report
    finally:
        stop.set()
        thread.join(timeout=30)


def _explained(decisions: list[StepDecision], traffic: ReplayReport) -> str:
    """A failed rollout assertion's message: each decision's reasons and values, the replay."""
    lines = [f"{d.action} at {d.weight}: {list(d.reasons)} {d.values}" for d in decisions]
    return "\n".join([*lines, f"replay: {traffic.to_dict()}"])


def _served_version(platform: LocalRollout) -> str:
    import json
    import urllib.request

    assert platform.url is not None
    request = urllib.request.Request(
        platform.url + "/recommend", data=json.dumps({"user_id": 1, "k": 3}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["model_version"])


def test_a_good_candidate_is_promoted_through_every_step(
    platform: LocalRollout, runs: Runs, traffic: ReplayReport
) -> None:
    old_stable = platform.records["stable"]
    decisions = platform.run_canary(runs.candidate, POLICY, interval_s=INTERVAL_S)
    advanced = [d for d in decisions if d.action in ("advance", "promote")]
    assert [d.weight for d in advanced] == [25, 50, 100], _explained(decisions, traffic)
    assert decisions[-1].action == "promote"
    assert "canary" not in platform.records
    assert platform.records["stable"].reference == str(runs.candidate)
    assert not old_stable.alive()
    assert _served_version(platform) == "run-ease-b"


def test_a_candidate_that_errors_is_rolled_back_within_the_first_steps_share(
    platform: LocalRollout, runs: Runs, traffic: ReplayReport
) -> None:
    platform.deploy_canary(runs.stable, weight=POLICY.steps[0])
    for pid in process_tree(platform.records["canary"].pid):  # the canary dies under load
        os.kill(pid, signal.SIGKILL)
    requests, errors = traffic.requests, traffic.errors
    decisions = platform.drive(POLICY, interval_s=INTERVAL_S)
    failed, sent = traffic.errors - errors, traffic.requests - requests
    assert [d.action for d in decisions] == ["rollback"]
    assert decisions[0].verdict.kind == "Breach"
    assert decisions[0].reasons[0].startswith("canary error rate")
    assert 0 < failed <= POLICY.steps[0] / 100 * sent * 1.3
    assert "canary" not in platform.records and platform.weight == 0


def test_a_slow_candidate_is_rolled_back(
    platform: LocalRollout, runs: Runs, traffic: ReplayReport
) -> None:
    platform.deploy_canary(runs.stable, weight=POLICY.steps[0])
    platform.inject_faults({"canary": {"delay_ms": 400}})
    decisions = platform.drive(POLICY, interval_s=INTERVAL_S)
    assert decisions[-1].action == "rollback"
    assert decisions[-1].values["canary_latency_p95_ms"] > 200
    assert any("p95 latency" in r for r in decisions[-1].reasons)
    assert _served_version(platform) == "run-ease-b"


def test_a_candidate_with_worse_click_through_is_rolled_back(
    platform: LocalRollout, runs: Runs, traffic: ReplayReport
) -> None:
    decisions = platform.run_canary(runs.popularity, POLICY, interval_s=INTERVAL_S)
    last = decisions[-1]
    assert last.action == "rollback", _explained(decisions, traffic)
    assert any("click-through" in r for r in last.reasons)
    assert last.values["canary_click_through"] < 0.7 * last.values["stable_click_through"]
    assert platform.records["stable"].reference == str(runs.candidate)


def test_shadow_mode_mirrors_without_serving_and_reports_overlap_and_latency(
    platform: LocalRollout, runs: Runs
) -> None:
    assert platform.url is not None
    platform.deploy_canary(runs.popularity, shadow=True)
    try:
        seen = replay(platform.url, runs.held_out, rate=RATE, limit=60)
        report = platform.shadow_report()
    finally:
        platform.rollback()
    assert set(seen.by_version) == {"run-ease-b"}  # the shadow's answers are never served
    assert report["requests"] >= 50 and report["errors"] == 0
    assert 0.0 <= report["overlap_at_k"] < 0.6  # popularity vs ease_t lists differ
    assert report["serving_p95_ms"] > 0 and report["shadow_p95_ms"] > 0


def test_a_redeploy_after_the_bentoml_parent_was_killed_stops_its_orphaned_worker(
    platform: LocalRollout, traffic: ReplayReport
) -> None:
    url, old, version = platform.url, platform.records["stable"], _served_version(platform)
    workers = [pid for pid in marked(ID_ENV, old.tag) if pid != old.pid]
    assert workers, "bentoml serve runs its worker in a session of its own"
    os.kill(old.pid, signal.SIGKILL)
    assert _served_version(platform) == version  # the orphan still answers
    assert platform.deploy_stable(old.reference) == url  # what the reconciler does next
    assert marked(ID_ENV, old.tag) == []
    assert platform.records["stable"].pid != old.pid
    assert _served_version(platform) == version


def test_a_later_invocation_finds_the_processes_by_the_state_file_and_stops_them(
    platform: LocalRollout,
) -> None:
    later = LocalRollout(platform.state_dir)
    assert later.url == platform.url
    assert set(later.records) == {"router", "stable"}
    assert all(p["alive"] for p in later.status()["processes"].values())
    records = list(later.records.values())
    later.stop()
    assert not any(r.alive() for r in records)
    assert marked(JOB_ENV, later.job_marker) == []
    assert not (platform.state_dir / "serving.json").exists()
