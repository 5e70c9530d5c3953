"""The reconcile core: (job, observations) -> (actions, status), as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kuberec.api.spec import RecommenderJob, spec_hash
from kuberec.api.status import JobStatus
from kuberec.operator.actions import (
    DeployStable,
    LaunchRun,
    Promote,
    Rollback,
    SetWeight,
    StartCanary,
)
from kuberec.operator.observations import (
    DataObservation,
    Observations,
    RunObservation,
    ServingObservation,
)
from kuberec.operator.reconcile import reconcile
from kuberec.serving.canary.analysis import VersionMetrics
from tests.support.jobs import recommender_job

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DATA = DataObservation("sha256:aaa", 1000)


def _job(status: JobStatus | None = None, **spec: Any) -> RecommenderJob:
    job = recommender_job("demo", {"data": {"movielens": "ml-100k"}, **spec}, generation=1)
    return job.model_copy(update={"status": status})


def _result(job: RecommenderJob, version: str, ndcg: float, accepted: bool,
            digest: str = DATA.digest, interactions: int = 1000) -> dict[str, Any]:  # fmt: skip
    return {
        "model": {
            "version": version, "uri": f"file:///a/{version}.bentomodel", "modelType": "ease_t",
            "metrics": {"ndcg@10": ndcg},
            "lineage": {"specHash": spec_hash(job.spec), "datasetDigest": digest,
                        "interactions": interactions, "pipelineRun": "r",
                        "codeVersion": "0", "trainedAt": NOW.isoformat()},
        },
        "decision": {"accepted": accepted, "reasons": ["because"], "metric": "ndcg@10",
                     "challenger": ndcg, "champion": None},
    }  # fmt: skip


def _obs(run: RunObservation | None = None, serving: ServingObservation | None = None,
         now: datetime = NOW, data: DataObservation = DATA) -> Observations:  # fmt: skip
    return Observations(now=now, data=data, run=run, serving=serving or ServingObservation(False))


def _trained(job: RecommenderJob, ndcg: float = 0.3, serving: ServingObservation | None = None
             ) -> tuple[RecommenderJob, JobStatus]:  # fmt: skip
    """A job whose first run has finished and whose model is the champion."""
    actions, status = reconcile(job, _obs())
    key = actions[0].key  # type: ignore[union-attr]
    done = RunObservation(key, key, "Succeeded", result=_result(job, "demo:v1", ndcg, True))
    _, status = reconcile(job.model_copy(update={"status": status}), _obs(done, serving))
    return job.model_copy(update={"status": status}), status


def test_a_new_job_launches_exactly_one_run() -> None:
    actions, status = reconcile(_job(), _obs())
    assert [type(a) for a in actions] == [LaunchRun]
    assert status.phase == "Training"
    assert status.pipeline_run is not None and status.pipeline_run.state == "Pending"
    assert status.observed_generation == 1


def test_a_running_run_launches_nothing_more() -> None:
    job = _job()
    actions, status = reconcile(job, _obs())
    key = actions[0].key  # type: ignore[union-attr]
    running = RunObservation(key, key, "Running", step="train")
    again, status = reconcile(job.model_copy(update={"status": status}), _obs(running))
    assert again == []
    assert status.phase == "Training"


def test_a_launched_run_is_pending_until_the_platform_shows_it() -> None:
    """A run recorded before its submission never claims to be Running."""
    job = _job()
    actions, status = reconcile(job, _obs())
    key = actions[0].key  # type: ignore[union-attr]
    again, status = reconcile(job.model_copy(update={"status": status}), _obs())  # not seen
    assert [type(a) for a in again] == [LaunchRun]  # relaunched by the same key
    assert (status.pipeline_run.state, status.pipeline_run.key) == ("Pending", key)  # type: ignore[union-attr]
    running = RunObservation(key, key, "Running", step="train")
    _, status = reconcile(job.model_copy(update={"status": status}), _obs(running))
    assert status.pipeline_run is not None and status.pipeline_run.state == "Running"
    assert status.pipeline_run.message is None


def test_the_evaluate_step_shows_as_evaluating() -> None:
    job = _job()
    actions, status = reconcile(job, _obs())
    key = actions[0].key  # type: ignore[union-attr]
    running = RunObservation(key, key, "Running", step="evaluate")
    _, status = reconcile(job.model_copy(update={"status": status}), _obs(running))
    assert status.phase == "Evaluating"


def test_the_first_accepted_model_becomes_champion_and_is_deployed() -> None:
    _, status = _trained(_job())
    assert status.champion is not None and status.champion.version == "demo:v1"
    assert status.champion.metrics == {"ndcgAt10": 0.3}


def test_same_spec_and_data_train_nothing() -> None:
    job, status = _trained(_job())
    actions, status = reconcile(job, _obs())
    assert not any(isinstance(a, LaunchRun) for a in actions)
    assert status.phase == "Serving"


def test_new_data_trains_a_challenger() -> None:
    job, _ = _trained(_job())
    actions, status = reconcile(job, _obs(data=DataObservation("sha256:bbb", 1500)))
    assert [type(a) for a in actions] == [LaunchRun]
    assert "new data" in status.history[-1].message


def test_new_data_below_min_new_interactions_waits() -> None:
    job, _ = _trained(_job(training={"retrainOn": {"minNewInteractions": 1000}}))
    actions, _ = reconcile(job, _obs(data=DataObservation("sha256:bbb", 1500)))
    assert not any(isinstance(a, LaunchRun) for a in actions)


def test_a_changed_spec_trains_a_challenger_with_a_new_key() -> None:
    _, status = _trained(_job())
    changed = _job(status, model={"type": "popularity"})
    actions, _ = reconcile(changed, _obs())
    launched = [a for a in actions if isinstance(a, LaunchRun)]
    assert len(launched) == 1 and launched[0].key != status.pipeline_run.key  # type: ignore[union-attr]
    assert launched[0].champion_uri == status.champion.uri  # type: ignore[union-attr]


def test_a_due_schedule_retrains() -> None:
    job, _ = _trained(_job(training={"schedule": "@daily"}))
    actions, _ = reconcile(job, _obs(now=NOW + timedelta(days=1, minutes=1)))
    assert [type(a) for a in actions] == [LaunchRun]


def _rejected_after(serving: ServingObservation) -> tuple[list[Any], JobStatus]:
    """A champion served at http://x, then a worse challenger judged while ``serving`` holds."""
    served = ServingObservation(True, stable="demo:v1", url="http://x", healthy=True)
    job, _ = _trained(_job(), serving=served)
    _, status = reconcile(job, _obs(serving=served))
    assert status.phase == "Serving" and status.url == "http://x"
    changed = _job(status, model={"type": "popularity"})
    actions, status = reconcile(changed, _obs(serving=serving))
    key = actions[0].key  # type: ignore[union-attr]
    done = RunObservation(key, key, "Succeeded",
                          result=_result(changed, "demo:v2", 0.1, accepted=False))  # fmt: skip
    return reconcile(changed.model_copy(update={"status": status}), _obs(done, serving))


def test_a_rejected_run_redeploys_a_champion_whose_servers_were_stopped() -> None:
    """After `kuberec stop`, the pass that rejects the challenger serves the champion again."""
    stopped = ServingObservation(True, stable=None, url=None, healthy=False)
    actions, status = _rejected_after(stopped)
    assert status.phase == "Rejected"
    assert actions == [DeployStable(status.champion)]  # type: ignore[arg-type]


def test_a_rejected_run_without_serving_shows_no_stale_url() -> None:
    actions, status = _rejected_after(ServingObservation(False))
    assert actions == [] and status.phase == "Rejected" and status.url is None


def test_a_rejected_challenger_leaves_the_champion_in_place() -> None:
    _, status = _trained(_job())
    changed = _job(status, model={"type": "popularity"})
    actions, status = reconcile(changed, _obs())
    key = actions[0].key  # type: ignore[union-attr]
    done = RunObservation(key, key, "Succeeded",
                          result=_result(changed, "demo:v2", 0.1, accepted=False))  # fmt: skip
    actions, status = reconcile(changed.model_copy(update={"status": status}), _obs(done))
    assert status.phase == "Rejected"
    assert status.champion.version == "demo:v1"  # type: ignore[union-attr]
    assert status.challenger.version == "demo:v2"  # type: ignore[union-attr]
    again, _ = reconcile(changed.model_copy(update={"status": status}), _obs())
    assert not any(isinstance(a, LaunchRun) for a in again)


def test_a_failed_step_is_named_with_its_reason_and_log_and_not_retried() -> None:
    job = _job()
    actions, status = reconcile(job, _obs())
    key = actions[0].key  # type: ignore[union-attr]
    failed = RunObservation(key, key, "Failed", step="train", message="ConfigError: dim < 1",
                            log="/w/runs/x/pipeline.log")  # fmt: skip
    _, status = reconcile(job.model_copy(update={"status": status}), _obs(failed))
    assert status.phase == "Failed"
    message = status.pipeline_run.message  # type: ignore[union-attr]
    assert "step train failed: ConfigError: dim < 1" in message
    assert "/w/runs/x/pipeline.log" in message
    again, _ = reconcile(job.model_copy(update={"status": status}), _obs())
    assert again == []


def test_a_run_the_platform_lost_is_asked_for_again_by_the_same_key() -> None:
    job = _job()
    actions, status = reconcile(job, _obs())
    again, _ = reconcile(job.model_copy(update={"status": status}), _obs(run=None))
    assert [a.key for a in again] == [actions[0].key]  # type: ignore[union-attr]


def test_suspend_pauses_everything() -> None:
    job = _job(suspend=True)
    actions, status = reconcile(job, _obs())
    assert actions == [] and status.phase == "Suspended"


def test_an_accepted_challenger_starts_a_canary_at_the_first_step() -> None:
    serving = ServingObservation(True, stable="demo:v1", url="http://x", healthy=True)
    _, status = _trained(_job(), serving=serving)
    changed = _job(status, model={"type": "ease"})
    actions, status = reconcile(changed, _obs(serving=serving))
    key = actions[0].key  # type: ignore[union-attr]
    done = RunObservation(key, key, "Succeeded", result=_result(changed, "demo:v2", 0.4, True))
    actions, status = reconcile(changed.model_copy(update={"status": status}),
                                _obs(done, serving))  # fmt: skip
    assert actions == [StartCanary(status.challenger, 10)]  # type: ignore[arg-type]
    assert status.phase == "RollingOut" and status.rollout.weight == 10  # type: ignore[union-attr]


def _canary_running(steps: list[int]) -> tuple[RecommenderJob, ServingObservation]:
    serving = ServingObservation(True, stable="demo:v1", url="http://x", healthy=True)
    rollout = {"canary": {"steps": steps, "interval": "60s"}}
    _, status = _trained(_job(serving=rollout), serving=serving)
    changed = _job(status, model={"type": "ease"}, serving=rollout)
    actions, status = reconcile(changed, _obs(serving=serving))
    key = actions[0].key  # type: ignore[union-attr]
    done = RunObservation(key, key, "Succeeded", result=_result(changed, "demo:v2", 0.4, True))
    _, status = reconcile(changed.model_copy(update={"status": status}), _obs(done, serving))
    canary = ServingObservation(True, stable="demo:v1", canary="demo:v2", url="http://x")
    return changed.model_copy(update={"status": status}), canary


def _traffic(canary_errors: int = 0) -> dict[str, VersionMetrics]:
    return {
        "canary": VersionMetrics(requests=100, errors=canary_errors, latency_p95_ms=20,
                                 impressions=1000, clicks=50),
        "stable": VersionMetrics(requests=300, errors=0, latency_p95_ms=20,
                                 impressions=3000, clicks=150),
    }  # fmt: skip


def test_a_healthy_canary_walks_every_step_then_is_promoted() -> None:
    job, canary = _canary_running([10, 50, 100])
    weights, now = [], NOW
    for _ in range(3):
        now += timedelta(seconds=61)
        seen = ServingObservation(**{**canary.__dict__, "traffic": _traffic()})
        actions, status = reconcile(job, _obs(serving=seen, now=now))
        job = job.model_copy(update={"status": status})
        weights += [a.weight for a in actions if isinstance(a, SetWeight)]
    assert weights == [50, 100]
    assert any(isinstance(a, Promote) for a in actions)
    assert status.champion.version == "demo:v2" and status.rollout is None  # type: ignore[union-attr]
    assert status.phase == "Serving"
    finished = status.last_rollout
    assert finished is not None and finished.outcome == "Promoted"
    assert [d.action for d in finished.decisions] == ["advance", "advance", "promote"]
    assert finished.decisions[0].values["canary_requests"] == 100


def test_an_erroring_canary_is_rolled_back_with_the_values_recorded() -> None:
    job, canary = _canary_running([10, 50, 100])
    seen = ServingObservation(**{**canary.__dict__, "traffic": _traffic(canary_errors=40)})
    actions, status = reconcile(job, _obs(serving=seen, now=NOW + timedelta(seconds=61)))
    assert any(isinstance(a, Rollback) for a in actions)
    assert status.champion.version == "demo:v1"  # type: ignore[union-attr]
    rolled = next(c for c in status.conditions if c.type == "Promoted")
    assert rolled.reason == "RolledBack" and "error" in rolled.message


def test_no_analysis_before_the_interval_has_passed() -> None:
    job, canary = _canary_running([10, 100])
    seen = ServingObservation(**{**canary.__dict__, "traffic": _traffic(canary_errors=40)})
    actions, status = reconcile(job, _obs(serving=seen, now=NOW + timedelta(seconds=30)))
    assert actions == [] and status.rollout is not None


def test_a_dead_champion_server_is_redeployed() -> None:
    serving = ServingObservation(True, stable="demo:v1", url="http://x", healthy=True)
    job, status = _trained(_job(), serving=serving)
    actions, _ = reconcile(job, _obs(serving=ServingObservation(True, stable=None,
                                                                healthy=False)))  # fmt: skip
    assert actions == [DeployStable(status.champion)]  # type: ignore[arg-type]
