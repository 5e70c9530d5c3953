"""The operator against a real control plane: kube-apiserver + etcd + kube-controller-manager.

One control plane per session (``tests/envtest``), a namespace and a Helm-chart install per
test. The CRD and the chart go in through ``kubectl apply --server-side``; the real
``kuberec operator run`` process authenticates with a TokenRequest token of the chart's
ServiceAccount, so RBAC is the chart's, enforced by the real server. KFP and Prometheus stay
HTTP stand-ins, and a small controller reports Deployments rolled out (no kubelet runs pods).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.envtest.cluster import RealCluster
from tests.envtest.controlplane import ControlPlane
from tests.envtest.fixtures import (  # noqa: F401
    ChartInstall,
    chart,
    cluster,
    control_plane,
    install_chart,
    operator_kubeconfig,
)
from tests.support.kfp_standin import KfpStandIn
from tests.support.operator_harness import (
    JOBS,
    DeploymentController,
    OperatorProcess,
    PrometheusStandIn,
    Traffic,
    finish_run,
    job_manifest,
    one_run,
    phase_is,
    runs_of,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.slow
POLL = "0.3"
GATEWAY = "gateways/public"


@pytest.fixture
def rolled_out(cluster: RealCluster) -> Iterator[DeploymentController]:  # noqa: F811
    with DeploymentController(cluster) as controller:  # type: ignore[arg-type]
        yield controller


@pytest.fixture
def start_operator(
    cluster: RealCluster, operator_kubeconfig: Path, tmp_path: Path,  # noqa: F811
    kfp: KfpStandIn, prometheus: PrometheusStandIn, artifacts: str,
    rolled_out: DeploymentController,
) -> Iterator[Any]:  # fmt: skip
    started: list[OperatorProcess] = []

    def start(peering: str | None = None, **env: str) -> OperatorProcess:
        base = {"KUBEREC_KFP_ENDPOINT": kfp.url, "KUBEREC_PROMETHEUS_URL": prometheus.url,
                "KUBEREC_ARTIFACT_STORE": artifacts, "KUBEREC_POLL_INTERVAL": POLL,
                "KUBEREC_GATEWAY": GATEWAY}  # fmt: skip
        process = OperatorProcess(operator_kubeconfig, tmp_path, {**base, **env},
                                  peering=peering, namespace=cluster.namespace).start()  # fmt: skip
        started.append(process)
        return process.wait_started()

    yield start
    for process in started:
        process.stop()


def serving(cluster: RealCluster, kfp: KfpStandIn, name: str, artifacts: str,  # noqa: F811
            version: str = "movies:v1") -> dict[str, Any]:  # fmt: skip
    run = one_run(kfp, name)
    finish_run(kfp, cluster, name, run, artifacts, version=version, ndcg=0.30)  # type: ignore[arg-type]
    return wait_for(phase_is(cluster, name, "Serving"), what=f"{name} Serving")  # type: ignore[no-any-return]


def deployments(cluster: RealCluster) -> dict[str, dict[str, Any]]:  # noqa: F811
    return {d["metadata"]["name"]: d for d in cluster.list("apps/v1", "Deployment")
            if not d["metadata"]["name"].startswith("kuberec-")}  # fmt: skip


def events_for(cluster: RealCluster, name: str) -> list[dict[str, Any]]:  # noqa: F811
    return [e for e in cluster.list("v1", "Event")
            if e.get("involvedObject", {}).get("name") == name]  # fmt: skip


def reasons(cluster: RealCluster, name: str) -> set[str]:  # noqa: F811
    return {e["reason"] for e in events_for(cluster, name)}


# --- what the real server accepts and refuses ------------------------------------------------


def test_the_crds_are_established_with_the_printer_columns_served(
    cluster: RealCluster,  # noqa: F811
) -> None:
    crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                      "recommenderjobs.kuberec.io")  # fmt: skip
    assert crd is not None
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions.get("NonStructuralSchema") is None
    cluster.apply(job_manifest("movies"))
    header = cluster.kubectl("get", "rj").stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "CHAMPION", "CHALLENGER", "TRAFFIC", "NDCG@10", "AGE"]


def test_the_chart_is_accepted_server_side_with_the_service_monitor(
    cluster: RealCluster,  # noqa: F811
) -> None:
    install = install_chart(cluster, {"serviceMonitor": {"enabled": True}})
    kinds = {m["kind"] for m in install.manifests}
    assert {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
            "ConfigMap", "Deployment", "KopfPeering", "ServiceMonitor"} <= kinds  # fmt: skip
    for manifest in install.manifests:
        found = cluster.get(manifest["apiVersion"], manifest["kind"],
                            manifest["metadata"]["name"])  # fmt: skip
        assert found is not None, f"{manifest['kind']} {manifest['metadata']['name']}"
        managers = {m["manager"] for m in found["metadata"]["managedFields"]}
        assert "helm" in managers


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"data": {"movielens": "ml-100k", "synthetic": {"users": 10, "items": 10,
                                                      "interactions": 10}}},
     "spec.data", "set exactly one of movielens, interactions, synthetic"),
    ({"data": {"movielens": "ml-7m"}}, "spec.data.movielens", "Unsupported value"),
    ({"training": {"backend": "local", "workers": 2}}, "spec.training",
     "the local backend runs one worker; use backend ray for more"),
], ids=["data-oneof-cel", "enum", "workers-cel"])  # fmt: skip
def test_an_invalid_job_is_refused_by_kubectl_with_the_servers_one_line_message(
    cluster: RealCluster,  # noqa: F811
    spec: dict[str, Any],
    field: str,
    message: str,
) -> None:
    import yaml

    manifest = job_manifest("bad", **spec)
    manifest["metadata"]["namespace"] = cluster.namespace
    done = cluster.kubectl("apply", "--server-side", "-f", "-", check=False,
                           input_text=yaml.safe_dump(manifest))  # fmt: skip
    assert done.returncode != 0
    # one line names the field and says what is wrong (the server may add a line saying the
    # CEL rules were skipped because the schema already failed)
    assert any(line.startswith(("* " + field, 'The RecommenderJob "bad" is invalid: ' + field))
               and message in line for line in done.stderr.splitlines()), done.stderr  # fmt: skip
    assert cluster.get(*JOBS, "bad") is None


# --- the life of a job, as the chart's ServiceAccount ----------------------------------------


def test_a_job_is_trained_served_canaried_and_promoted_as_the_service_account(
    cluster: RealCluster, kfp: KfpStandIn, prometheus: PrometheusStandIn,  # noqa: F811
    start_operator: Any, artifacts: str,
) -> None:  # fmt: skip
    operator = start_operator()
    cluster.apply(job_manifest("movies"))
    status = wait_for(phase_is(cluster, "movies", "Training"), what="phase Training")
    run = one_run(kfp, "movies")
    assert status["pipelineRun"]["key"] in run["display_name"]
    stored = cluster.get(*JOBS, "movies") or {}
    assert "kuberec.io/finalizer" in stored["metadata"]["finalizers"]
    wait_for(lambda: "RunLaunched" in reasons(cluster, "movies"), what="a RunLaunched event")

    status = serving(cluster, kfp, "movies", artifacts)
    assert status["champion"]["version"] == "movies:v1"
    assert set(deployments(cluster)) == {"movies-stable"}
    service = cluster.get("v1", "Service", "movies")
    route = cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", "movies")
    ray = cluster.get("ray.io/v1", "RayCluster", "movies-ray")
    assert service is not None and route is not None and ray is not None
    uid = stored["metadata"]["uid"]
    for owned in (deployments(cluster)["movies-stable"], service, route, ray):
        assert [r["uid"] for r in owned["metadata"]["ownerReferences"]] == [uid]
    wait_for(lambda: {"RunLaunched", "Deploying", "Serving"} <= reasons(cluster, "movies"),
             what="an Event per phase")  # fmt: skip
    row = cluster.kubectl("get", "rj", "movies", "--no-headers").stdout.split()
    assert row[:2] == ["movies", "Serving"] and "movies:v1" in row and "0.3" in row

    cluster.apply(job_manifest("movies", model={"type": "ease", "hyperparameters": {"lam": 200}}))
    run = one_run(kfp, "movies", count=2)
    prometheus.traffic = {
        "movies:v1": Traffic(requests=100, errors=0, p95_s=0.05, impressions=100, clicks=10),
        "movies:v2": Traffic(requests=100, errors=0, p95_s=0.05, impressions=100, clicks=12),
    }
    finish_run(kfp, cluster, "movies", run, artifacts, version="movies:v2", ndcg=0.35,  # type: ignore[arg-type]
               champion=0.30)  # fmt: skip
    rolling = wait_for(lambda: status_of(cluster, "movies").get("rollout"), what="a rollout")  # type: ignore[arg-type]
    assert rolling["weight"] == 50
    wait_for(lambda: "movies-canary" in deployments(cluster), what="the canary Deployment")
    status = wait_for(phase_is(cluster, "movies", "Serving"), timeout=40, what="promotion")
    assert status["champion"]["version"] == "movies:v2"
    assert set(deployments(cluster)) == {"movies-stable"}
    stable = deployments(cluster)["movies-stable"]
    assert stable["metadata"]["annotations"]["kuberec.io/model-version"] == "movies:v2"
    assert len(runs_of(kfp, "movies")) == 2
    assert operator.alive()
    assert "Forbidden" not in operator.log()


def test_a_restart_mid_canary_resumes_without_relaunching(
    cluster: RealCluster, kfp: KfpStandIn, prometheus: PrometheusStandIn,  # noqa: F811
    start_operator: Any, artifacts: str,
) -> None:  # fmt: skip
    first = start_operator()
    cluster.apply(job_manifest("movies"))
    serving(cluster, kfp, "movies", artifacts)
    cluster.apply(job_manifest("movies", model={"type": "ease"}))
    run = one_run(kfp, "movies", count=2)
    prometheus.traffic = {}  # no traffic yet: the canary holds at its first step
    finish_run(kfp, cluster, "movies", run, artifacts, version="movies:v2", ndcg=0.35)  # type: ignore[arg-type]
    wait_for(lambda: "movies-canary" in deployments(cluster), what="the canary")
    first.stop()
    submissions = [r for r in kfp.requests if r == ("POST", "/apis/v2beta1/runs")]
    prometheus.traffic = {
        "movies:v1": Traffic(requests=100, p95_s=0.05, impressions=100, clicks=10),
        "movies:v2": Traffic(requests=100, p95_s=0.05, impressions=100, clicks=10),
    }
    second = start_operator()
    status = wait_for(phase_is(cluster, "movies", "Serving"), timeout=40, what="promotion")
    assert second.alive()
    assert status["champion"]["version"] == "movies:v2"
    assert [r for r in kfp.requests if r == ("POST", "/apis/v2beta1/runs")] == submissions


def test_two_peered_replicas_launch_one_run(
    cluster: RealCluster,  # noqa: F811
    kfp: KfpStandIn,
    start_operator: Any,
) -> None:
    replicas = [start_operator(peering="kuberec"), start_operator(peering="kuberec")]

    def peers() -> int:
        peering = cluster.get("kopf.dev/v1", "KopfPeering", "kuberec") or {}
        return len(peering.get("status") or {})

    wait_for(lambda: peers() == 2, timeout=40, what="both replicas to announce themselves")
    cluster.apply(job_manifest("movies"))
    wait_for(phase_is(cluster, "movies", "Training"), what="Training")
    time.sleep(2)  # a second launch would show by now
    assert len(runs_of(kfp, "movies")) == 1
    assert all(r.alive() for r in replicas)


# --- deletion: the finalizer, and garbage collection by kube-controller-manager ---------------


def test_deleting_a_served_job_runs_the_finalizer_and_removes_what_it_made(
    cluster: RealCluster,  # noqa: F811
    kfp: KfpStandIn,
    start_operator: Any,
    artifacts: str,
) -> None:
    start_operator()
    cluster.apply(job_manifest("movies"))
    serving(cluster, kfp, "movies", artifacts)
    cluster.delete(*JOBS, "movies")
    wait_for(lambda: cluster.get(*JOBS, "movies") is None, what="the job to be released")
    assert deployments(cluster) == {}
    assert cluster.get("v1", "Service", "movies") is None
    assert cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", "movies") is None


def test_the_garbage_collector_removes_the_owned_objects_when_no_operator_runs(
    cluster: RealCluster,  # noqa: F811
    kfp: KfpStandIn,
    start_operator: Any,
    artifacts: str,
) -> None:
    operator = start_operator()
    cluster.apply(job_manifest("movies"))
    serving(cluster, kfp, "movies", artifacts)
    operator.stop()
    patch = '{"metadata":{"finalizers":null}}'
    cluster.kubectl("patch", "rj", "movies", "--type=merge", "-p", patch)
    cluster.delete(*JOBS, "movies")
    wait_for(lambda: cluster.get(*JOBS, "movies") is None, what="the job to be deleted")
    wait_for(lambda: not deployments(cluster) and cluster.get("v1", "Service", "movies") is None
             and cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", "movies") is None,
             timeout=60, what="kube-controller-manager to collect the owned objects")  # fmt: skip


# --- RBAC: the chart's permissions are enough, and one fewer is reported --------------------


def test_a_missing_permission_is_a_condition_and_an_event_not_a_crash(
    cluster: RealCluster, chart: ChartInstall, kfp: KfpStandIn,  # noqa: F811
    start_operator: Any, artifacts: str,
) -> None:  # fmt: skip
    role = next(m for m in chart.manifests if m["kind"] == "Role")
    for rule in role["rules"]:
        if rule["resources"] == ["deployments"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    cluster.apply(role)  # forced: the chart's own field manager loses the verb
    operator = start_operator()
    cluster.apply(job_manifest("movies"))
    run = one_run(kfp, "movies")
    finish_run(kfp, cluster, "movies", run, artifacts, version="movies:v1", ndcg=0.3)  # type: ignore[arg-type]

    def forbidden() -> Any:
        conditions = status_of(cluster, "movies").get("conditions", [])  # type: ignore[arg-type]
        return next((c for c in conditions if c["reason"] == "KubernetesForbidden"), None)

    found = wait_for(forbidden, timeout=40, what="the KubernetesForbidden condition")
    assert found["type"] == "PlatformAvailable" and found["status"] == "False"
    assert 'cannot create resource "deployments"' in found["message"]
    wait_for(lambda: "KubernetesForbidden" in reasons(cluster, "movies"), what="a Warning event")
    assert operator.alive()
    assert deployments(cluster) == {}


def test_the_control_plane_runs_with_rbac_enforced(
    control_plane: ControlPlane,  # noqa: F811
    cluster: RealCluster,  # noqa: F811
    operator_kubeconfig: Path,  # noqa: F811
) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(operator_kubeconfig)))
    with pytest.raises(client.ApiException) as caught:
        api.list_namespaced_secret(cluster.namespace)
    assert caught.value.status == 403
    assert control_plane.alive()
