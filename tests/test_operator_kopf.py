"""The operator as a process (``kuberec operator run``) against the Kubernetes API emulator.

Real kopf, the real kubernetes client over HTTP, the real reconcile loop; KFP
and Prometheus are HTTP stand-ins (neither can run here), and a small
controller marks Deployments rolled out (the emulator runs no pods).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client

from tests.k8s_emulator import KubeEmulator
from tests.k8s_emulator.fixtures import (  # noqa: F401
    k8s_client,
    k8s_emulator,
    k8s_kubeconfig,
    load_chart_crds,
)
from tests.kfp_standin import KfpStandIn
from tests.operator_harness import (
    JOBS,
    DeploymentController,
    OperatorProcess,
    PrometheusStandIn,
    Traffic,
    finish_run,
    install_kuberay,
    job_manifest,
    runs_of,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.slow
POLL = "0.3"


@pytest.fixture
def prometheus() -> Iterator[PrometheusStandIn]:
    standin = PrometheusStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def artifacts(tmp_path: Path) -> str:
    return (tmp_path / "artifacts").as_uri()


@pytest.fixture
def cluster(k8s_emulator: KubeEmulator) -> Iterator[KubeEmulator]:  # noqa: F811
    load_chart_crds(k8s_emulator)
    install_kuberay(k8s_emulator)
    with DeploymentController(k8s_emulator):
        yield k8s_emulator


@pytest.fixture
def start_operator(
    cluster: KubeEmulator, k8s_kubeconfig: Path, tmp_path: Path, kfp: KfpStandIn,  # noqa: F811
    prometheus: PrometheusStandIn, artifacts: str,
) -> Iterator[Any]:  # fmt: skip
    started: list[OperatorProcess] = []

    def start(peering: str | None = None, **env: str) -> OperatorProcess:
        base = {"KUBEREC_KFP_ENDPOINT": kfp.url, "KUBEREC_PROMETHEUS_URL": prometheus.url,
                "KUBEREC_ARTIFACT_STORE": artifacts, "KUBEREC_POLL_INTERVAL": POLL}  # fmt: skip
        process = OperatorProcess(k8s_kubeconfig, tmp_path, {**base, **env},
                                  peering=peering).start()  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def phase_is(cluster: KubeEmulator, name: str, phase: str) -> Any:
    def check() -> Any:
        status = status_of(cluster, name)
        return status if status.get("phase") == phase else None

    return check


def one_run(kfp: KfpStandIn, name: str, count: int = 1) -> dict[str, Any]:
    runs = wait_for(lambda: len(runs_of(kfp, name)) >= count and runs_of(kfp, name),
                    what=f"{count} run(s) of {name}")  # fmt: skip
    return runs[-1]


def serving(cluster: KubeEmulator, kfp: KfpStandIn, name: str, artifacts: str,
            version: str = "movies:v1") -> dict[str, Any]:  # fmt: skip
    """Drive a new job to Serving: its run succeeds with ``version``."""
    run = one_run(kfp, name)
    finish_run(kfp, cluster, name, run, artifacts, version=version, ndcg=0.30)
    return wait_for(phase_is(cluster, name, "Serving"), what=f"{name} Serving")  # type: ignore[no-any-return]


def deployments(cluster: KubeEmulator) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in cluster.list("apps/v1", "Deployment", "default")}


def events_for(cluster: KubeEmulator, name: str) -> list[dict[str, Any]]:
    return [e for e in cluster.list("v1", "Event", "default")
            if e.get("involvedObject", {}).get("name") == name]  # fmt: skip


# --- the life of a job ------------------------------------------------------------------------


def test_a_new_job_launches_exactly_one_run_and_shows_training(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(job_manifest("movies"))
    status = wait_for(phase_is(cluster, "movies", "Training"), what="phase Training")
    run = one_run(kfp, "movies")
    assert status["pipelineRun"]["key"] in run["display_name"]
    wait_for(lambda: any(e["reason"] == "RunLaunched" for e in events_for(cluster, "movies")),
             what="a RunLaunched event")  # fmt: skip
    wait_for(lambda: "kuberec.io/finalizer" in (cluster.get(*JOBS, "movies") or {}).get(
        "metadata", {}).get("finalizers", []), what="the finalizer")  # fmt: skip
    assert len(runs_of(kfp, "movies")) == 1


def test_a_succeeded_run_is_deployed_and_served(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any, artifacts: str
) -> None:
    start_operator()
    cluster.apply(job_manifest("movies"))
    status = serving(cluster, kfp, "movies", artifacts)
    assert status["champion"]["version"] == "movies:v1"
    assert status["url"] == "http://movies.default.svc.cluster.local"
    found = deployments(cluster)
    assert set(found) == {"movies-stable"}
    service = cluster.get("v1", "Service", "movies")
    assert service is not None
    for manifest in (found["movies-stable"], service):
        body = {k: v for k, v in manifest.items() if k != "status"}
        body["metadata"] = {k: v for k, v in body["metadata"].items()
                            if k in ("name", "namespace", "labels", "annotations",
                                     "ownerReferences")}  # fmt: skip
        kubernetes_validate.validate(body, "1.30", strict=True)
    wait_for(lambda: {"RunLaunched", "Deploying", "Serving"} <= {
        e["reason"] for e in events_for(cluster, "movies")}, what="an Event per phase")


def test_a_spec_change_launches_a_new_run_that_is_canaried_then_promoted(
    cluster: KubeEmulator, kfp: KfpStandIn, prometheus: PrometheusStandIn, start_operator: Any,
    artifacts: str,
) -> None:  # fmt: skip
    start_operator()
    cluster.apply(job_manifest("movies"))
    serving(cluster, kfp, "movies", artifacts)
    changed = job_manifest("movies", model={"type": "ease", "hyperparameters": {"lam": 200}})
    cluster.apply(changed)
    run = one_run(kfp, "movies", count=2)
    prometheus.traffic = {
        "movies:v1": Traffic(requests=100, errors=0, p95_s=0.05, impressions=100, clicks=10),
        "movies:v2": Traffic(requests=100, errors=0, p95_s=0.05, impressions=100, clicks=12),
    }
    finish_run(kfp, cluster, "movies", run, artifacts, version="movies:v2", ndcg=0.35,
               champion=0.30)  # fmt: skip
    rolling = wait_for(lambda: status_of(cluster, "movies").get("rollout"), what="a rollout")
    assert rolling["weight"] == 50
    wait_for(lambda: "movies-canary" in deployments(cluster), what="the canary Deployment")
    status = wait_for(phase_is(cluster, "movies", "Serving"), timeout=30, what="promotion")
    assert status["champion"]["version"] == "movies:v2"
    assert set(deployments(cluster)) == {"movies-stable"}
    stable = deployments(cluster)["movies-stable"]
    assert stable["metadata"]["annotations"]["kuberec.io/model-version"] == "movies:v2"
    assert any('model_version=~' in q for q in prometheus.queries)
    assert len(runs_of(kfp, "movies")) == 2


def test_a_restart_mid_canary_resumes_without_relaunching(
    cluster: KubeEmulator, kfp: KfpStandIn, prometheus: PrometheusStandIn, start_operator: Any,
    artifacts: str,
) -> None:  # fmt: skip
    first = start_operator()
    cluster.apply(job_manifest("movies"))
    serving(cluster, kfp, "movies", artifacts)
    cluster.apply(job_manifest("movies", model={"type": "ease"}))
    run = one_run(kfp, "movies", count=2)
    prometheus.traffic = {}  # no traffic yet: the canary holds at its first step
    finish_run(kfp, cluster, "movies", run, artifacts, version="movies:v2", ndcg=0.35)
    wait_for(lambda: "movies-canary" in deployments(cluster), what="the canary")
    first.stop()
    submissions = [r for r in kfp.requests if r == ("POST", "/apis/v2beta1/runs")]
    prometheus.traffic = {
        "movies:v1": Traffic(requests=100, p95_s=0.05, impressions=100, clicks=10),
        "movies:v2": Traffic(requests=100, p95_s=0.05, impressions=100, clicks=10),
    }
    second = start_operator()
    status = wait_for(phase_is(cluster, "movies", "Serving"), timeout=30, what="promotion")
    assert second.alive()
    assert status["champion"]["version"] == "movies:v2"
    assert [r for r in kfp.requests if r == ("POST", "/apis/v2beta1/runs")] == submissions
    assert len(runs_of(kfp, "movies")) == 2


def test_two_peered_replicas_launch_one_run(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any
) -> None:
    cluster.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                   "metadata": {"name": "kuberec", "namespace": "default"}})  # fmt: skip
    replicas = [start_operator(peering="kuberec"), start_operator(peering="kuberec")]

    def peers() -> int:
        peering = cluster.get("kopf.dev/v1", "KopfPeering", "kuberec") or {}
        return len(peering.get("status", {}))

    wait_for(lambda: peers() == 2, what="both replicas to announce themselves")
    cluster.apply(job_manifest("movies"))
    wait_for(phase_is(cluster, "movies", "Training"), what="Training")
    time.sleep(2)  # a second launch would show by now
    assert len(runs_of(kfp, "movies")) == 1
    assert all(r.alive() for r in replicas)


# --- failures ---------------------------------------------------------------------------------


def test_a_conflicting_status_write_is_retried(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any, artifacts: str
) -> None:
    operator = start_operator()
    cluster.apply(job_manifest("movies"))
    run = one_run(kfp, "movies")
    wait_for(phase_is(cluster, "movies", "Training"), what="Training")
    rule = cluster.fail_next(2, status=409, verb="patch", resource="recommenderjobs")
    finish_run(kfp, cluster, "movies", run, artifacts, version="movies:v1", ndcg=0.3)
    wait_for(phase_is(cluster, "movies", "Serving"), what="Serving despite the conflicts")
    assert rule.hits == 2
    assert operator.alive()
    assert len(runs_of(kfp, "movies")) == 1


def test_kfp_unreachable_backs_off_with_a_condition_and_never_crashes(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any
) -> None:
    kfp.unavailable = True
    operator = start_operator()
    cluster.apply(job_manifest("movies"))

    def kfp_condition() -> Any:
        conditions = status_of(cluster, "movies").get("conditions", [])
        return next((c for c in conditions if c["reason"] == "KfpUnavailable"), None)

    found = wait_for(kfp_condition, what="the KfpUnavailable condition")
    assert found["type"] == "PlatformAvailable" and found["status"] == "False"
    assert "retrying in" in found["message"]
    attempts = len(kfp.requests)
    wait_for(lambda: len(kfp.requests) > attempts, what="a retry")
    assert operator.alive()
    kfp.unavailable = False
    wait_for(lambda: runs_of(kfp, "movies"), timeout=40, what="the run once KFP is back")
    status = wait_for(phase_is(cluster, "movies", "Training"), what="Training")
    available = next(c for c in status["conditions"] if c["type"] == "PlatformAvailable")
    assert available["status"] == "True"
    assert len(runs_of(kfp, "movies")) == 1


def test_deleting_the_job_removes_what_the_operator_created(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any, artifacts: str
) -> None:
    start_operator()
    cluster.apply(job_manifest("movies"))
    serving(cluster, kfp, "movies", artifacts)
    api = client.CustomObjectsApi(client.ApiClient(_config(cluster)))
    api.delete_namespaced_custom_object("kuberec.io", "v1alpha1", "default", "recommenderjobs",
                                        "movies")  # fmt: skip
    wait_for(lambda: cluster.get(*JOBS, "movies") is None, what="the job to be released")
    assert deployments(cluster) == {}
    assert cluster.get("v1", "Service", "movies") is None
    deleted = {r.path.rsplit("/", 1)[-1] for r in cluster.requests_for("delete", "deployments")}
    assert "movies-stable" in deleted  # by the finalizer, not only by garbage collection


def test_deleting_a_training_job_terminates_its_pipeline_run(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(job_manifest("movies"))
    run = one_run(kfp, "movies")
    wait_for(phase_is(cluster, "movies", "Training"), what="Training")
    api = client.CustomObjectsApi(client.ApiClient(_config(cluster)))
    api.delete_namespaced_custom_object("kuberec.io", "v1alpha1", "default", "recommenderjobs",
                                        "movies")  # fmt: skip
    wait_for(lambda: cluster.get(*JOBS, "movies") is None, what="the job to be released")
    assert kfp.runs[run["run_id"]]["state"] == "CANCELED"


def test_an_invalid_job_is_rejected_with_the_schema_message(
    cluster: KubeEmulator, k8s_client: client.ApiClient  # noqa: F811
) -> None:
    api = client.CustomObjectsApi(k8s_client)
    bad = job_manifest("bad", data={"movielens": "ml-100k", "synthetic": {
        "users": 10, "items": 10, "interactions": 10}})  # fmt: skip
    with pytest.raises(client.ApiException) as caught:
        api.create_namespaced_custom_object("kuberec.io", "v1alpha1", "default",
                                            "recommenderjobs", bad)  # fmt: skip
    assert caught.value.status == 422
    assert "set exactly one of movielens, interactions, synthetic" in str(caught.value.body)


def test_the_operator_serves_its_metrics_and_liveness(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any
) -> None:
    operator = start_operator()
    cluster.apply(job_manifest("movies"))
    wait_for(phase_is(cluster, "movies", "Training"), what="Training")

    def metrics() -> str | None:
        code, text = operator.get("/metrics")
        return text if code == 200 and 'kuberec_operator_jobs{phase="Training"} 1.0' in text \
            else None

    text = wait_for(metrics, what="the operator metrics")
    assert "kuberec_operator_reconciles_total" in text
    assert "kuberec_operator_reconcile_duration_seconds_bucket" in text
    assert "kuberec_operator_runs_launched_total 1.0" in text
    code, _ = wait_for(lambda: (r := operator.get("/healthz", operator.health_port))[0] == 200
                       and r, what="liveness")  # fmt: skip
    assert code == 200


def _config(cluster: KubeEmulator) -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = cluster.url
    return configuration
