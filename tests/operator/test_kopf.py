"""The operator as a process (``kuberec operator run``) against the Kubernetes API emulator.

What a real API server cannot be asked for on demand: injected 409s, KFP going away, and the
operator's own endpoints. The life of a job, RBAC, the CRD's validation, peering and deletion
run against the real kube-apiserver in ``test_envtest.py``. Real kopf, the real
kubernetes client over HTTP, the real reconcile loop; KFP and Prometheus are HTTP stand-ins,
and a small controller marks Deployments rolled out (the emulator runs no pods).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.k8s_emulator import KubeEmulator
from tests.k8s_emulator.fixtures import (  # noqa: F401
    k8s_client,
    k8s_emulator,
    k8s_kubeconfig,
    load_chart_crds,
)
from tests.support.kfp_standin import KfpStandIn
from tests.support.operator_harness import (
    JOBS,
    DeploymentController,
    OperatorProcess,
    PrometheusStandIn,
    finish_run,
    install_kuberay,
    job_manifest,
    one_run,
    phase_is,
    runs_of,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.slow
POLL = "0.3"


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
        return process.wait_started()

    yield start
    for process in started:
        process.stop()


# --- faults and endpoints --------------------------------------------------------------------


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


def test_the_operator_serves_its_metrics_and_liveness(
    cluster: KubeEmulator, kfp: KfpStandIn, start_operator: Any
) -> None:
    operator = start_operator()
    cluster.apply(job_manifest("movies"))
    wait_for(phase_is(cluster, "movies", "Training"), what="Training")

    def metrics() -> str | None:
        code, text = operator.get("/metrics")
        return (
            text if code == 200 and 'kuberec_operator_jobs{phase="Training"} 1.0' in text else None
        )

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
