"""Cluster submission through the real kfp.Client against a local stand-in of the KFP REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kuberec.api.spec import RecommenderJob, load_job
from kuberec.operator.kubernetes.kfp_client import KfpRuns, KfpUnavailable, experiment_name
from kuberec.operator.kubernetes.settings import ClusterSettings
from kuberec.pipelines.context import RunContext, run_result_uri
from tests.support.kfp_standin import KfpStandIn
from tests.support.paths import ROOT

JOB = load_job(ROOT / "examples" / "movielens-100k.yaml")
STORES = ClusterSettings(feast_registry="postgresql+psycopg://feast@pg/feast",
                         feast_redis="redis.feast:6379")  # fmt: skip


@pytest.fixture
def standin(kfp: KfpStandIn) -> KfpStandIn:
    return kfp


@pytest.fixture
def runs(standin: KfpStandIn, tmp_path: Path) -> KfpRuns:
    return KfpRuns(standin.url, artifact_root=tmp_path.as_uri())


def _context(runs: KfpRuns, key: str = "k1") -> RunContext:
    return RunContext(run_id=f"r-{key}", run_key=key, artifact_root=runs.artifact_root,
                      feature_store_dir="/feast")  # fmt: skip


def test_a_submission_creates_the_jobs_experiment_and_one_run(
    runs: KfpRuns, standin: KfpStandIn
) -> None:
    run_id = runs.submit(JOB, _context(runs))
    assert [e["display_name"] for e in standin.experiments.values()] == [experiment_name(JOB)]
    run = standin.runs[run_id]
    assert run["display_name"] == "movielens-100k-k1"
    assert json.loads(run["runtime_config"]["parameters"]["context"])["run_key"] == "k1"


def test_submitting_the_same_key_twice_returns_the_same_run(
    runs: KfpRuns, standin: KfpStandIn
) -> None:
    assert runs.submit(JOB, _context(runs)) == runs.submit(JOB, _context(runs))
    assert len(standin.runs) == 1
    assert len(standin.experiments) == 1


def test_a_new_key_is_a_new_run(runs: KfpRuns, standin: KfpStandIn) -> None:
    runs.submit(JOB, _context(runs, "k1"))
    runs.submit(JOB, _context(runs, "k2"))
    assert len(standin.runs) == 2


def test_a_pending_run_is_observed_as_running(runs: KfpRuns) -> None:
    run_id = runs.submit(JOB, _context(runs))
    seen = runs.observe(JOB, "k1")
    assert seen is not None and seen.state == "Running" and seen.id == run_id


def test_an_unknown_key_is_not_found(runs: KfpRuns) -> None:
    runs.submit(JOB, _context(runs))
    assert runs.observe(JOB, "other") is None


def test_a_failed_run_names_the_failed_task_and_the_error(
    runs: KfpRuns, standin: KfpStandIn
) -> None:
    run_id = runs.submit(JOB, _context(runs))
    standin.set_state(run_id, "FAILED", error="OOMKilled",
                      tasks=[{"display_name": "ingest", "state": "SUCCEEDED"},
                             {"display_name": "train", "state": "FAILED"}])  # fmt: skip
    seen = runs.observe(JOB, "k1")
    assert seen is not None and (seen.state, seen.step, seen.message) == (
        "Failed",
        "train",
        "OOMKilled",
    )


def test_a_succeeded_run_returns_the_result_the_package_step_wrote(
    runs: KfpRuns, standin: KfpStandIn
) -> None:
    run_id = runs.submit(JOB, _context(runs))
    result = Path(run_result_uri(runs.artifact_root, JOB, "k1").removeprefix("file://"))
    result.parent.mkdir(parents=True)
    result.write_text(json.dumps({"model": {"version": "m:1"}, "decision": {}}))
    standin.set_state(run_id, "SUCCEEDED")
    seen = runs.observe(JOB, "k1")
    assert seen is not None and seen.state == "Succeeded"
    assert seen.result["model"]["version"] == "m:1"  # type: ignore[index]


def test_a_succeeded_run_without_a_result_is_a_failure_of_package(
    runs: KfpRuns, standin: KfpStandIn
) -> None:
    run_id = runs.submit(JOB, _context(runs))
    standin.set_state(run_id, "SUCCEEDED")
    seen = runs.observe(JOB, "k1")
    assert seen is not None and (seen.state, seen.step) == ("Failed", "package")


def test_an_unavailable_api_raises_a_retryable_error(runs: KfpRuns, standin: KfpStandIn) -> None:
    standin.unavailable = True
    with pytest.raises(KfpUnavailable, match="503"):
        runs.submit(JOB, _context(runs))
    assert standin.runs == {}


def test_cancel_terminates_a_running_run(runs: KfpRuns, standin: KfpStandIn) -> None:
    run_id = runs.submit(JOB, _context(runs))
    assert runs.cancel(JOB, "k1") is True
    assert standin.runs[run_id]["state"] == "CANCELED"


def test_cancel_leaves_a_finished_run_alone(runs: KfpRuns, standin: KfpStandIn) -> None:
    run_id = runs.submit(JOB, _context(runs))
    standin.set_state(run_id, "SUCCEEDED")
    assert runs.cancel(JOB, "k1") is False
    assert standin.runs[run_id]["state"] == "SUCCEEDED"


def _step_env(standin: KfpStandIn, run_id: str) -> dict[str, dict[str, str]]:
    executors = standin.runs[run_id]["pipeline_spec"]["deploymentSpec"]["executors"]
    return {name: {e["name"]: e["value"] for e in executor["container"].get("env", [])}
            for name, executor in executors.items()}  # fmt: skip


def _production(job: RecommenderJob) -> RecommenderJob:
    document = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["features"] = {"profile": "production"}
    return RecommenderJob.model_validate(document)


def test_a_production_profile_run_gives_every_step_the_shared_feast_stores(
    standin: KfpStandIn, tmp_path: Path
) -> None:
    runs = KfpRuns(standin.url, artifact_root=tmp_path.as_uri(), settings=STORES)
    env = _step_env(standin, runs.submit(_production(JOB), _context(runs)))
    assert set(env) == {f"exec-{s}" for s in ("ingest", "features", "train", "evaluate", "package")}
    assert all(e == {"KUBEREC_FEAST_REGISTRY": "postgresql+psycopg://feast@pg/feast",
                     "KUBEREC_FEAST_REDIS": "redis.feast:6379"} for e in env.values())  # fmt: skip


def test_a_default_profile_run_sets_no_step_environment(
    standin: KfpStandIn, tmp_path: Path
) -> None:
    runs = KfpRuns(standin.url, artifact_root=tmp_path.as_uri(), settings=STORES)
    env = _step_env(standin, runs.submit(JOB, _context(runs)))
    assert not any(env.values())


def test_unset_cluster_stores_set_no_step_environment(standin: KfpStandIn, tmp_path: Path) -> None:
    runs = KfpRuns(standin.url, artifact_root=tmp_path.as_uri())
    env = _step_env(standin, runs.submit(_production(JOB), _context(runs)))
    assert not any(env.values())
