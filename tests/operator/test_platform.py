"""The Kubernetes platform's actions, in-process, over HTTP to the API emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus, Lineage, ModelRecord
from kuberec.operator.actions import DeployStable, Promote, Rollback, SetWeight, StartCanary
from kuberec.operator.kubernetes.platform import KubernetesPlatform, KubernetesUnavailable
from kuberec.operator.kubernetes.settings import ClusterSettings
from tests.k8s_emulator import KubeEmulator
from tests.k8s_emulator.fixtures import (  # noqa: F401
    k8s_client,
    k8s_emulator,
    k8s_kubeconfig,
    load_chart_crds,
)
from tests.support.operator_harness import (
    DeploymentController,
    install_kuberay,
    job_manifest,
    typed_job,
)

ROUTES = ("gateway.networking.k8s.io/v1", "HTTPRoute")


def model(version: str) -> ModelRecord:
    lineage = Lineage(spec_hash="h", dataset_digest="d", interactions=1, pipeline_run="r",
                      code_version="0", trained_at="2026-01-01T00:00:00+00:00")  # fmt: skip
    return ModelRecord(version=version, uri=f"file:///models/{version}", model_type="ease_t",
                       lineage=lineage)  # fmt: skip


@pytest.fixture
def job(k8s_emulator: KubeEmulator) -> RecommenderJob:  # noqa: F811
    load_chart_crds(k8s_emulator)
    install_kuberay(k8s_emulator)
    k8s_emulator.apply(job_manifest("movies"))
    return typed_job(k8s_emulator, "movies")


@pytest.fixture
def platform(k8s_client: client.ApiClient) -> KubernetesPlatform:  # noqa: F811
    return KubernetesPlatform(ClusterSettings(gateway="infra/public"), k8s_client)


@pytest.fixture
def controller(k8s_emulator: KubeEmulator) -> Iterator[DeploymentController]:  # noqa: F811
    with DeploymentController(k8s_emulator, interval=0.05) as running:
        yield running


def with_status(job: RecommenderJob, **fields: Any) -> RecommenderJob:
    return job.model_copy(update={"status": JobStatus(**fields)})


def deployments(emulator: KubeEmulator) -> dict[str, int]:
    return {d["metadata"]["name"]: d["spec"]["replicas"]
            for d in emulator.list("apps/v1", "Deployment", "default")}  # fmt: skip


def weights(emulator: KubeEmulator) -> list[tuple[str, int]]:
    (route,) = emulator.list(*ROUTES, "default")
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def test_deploy_stable_serves_one_version_behind_a_route(
    platform: KubernetesPlatform,
    job: RecommenderJob,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    platform.execute(job, DeployStable(model("movies:v1")))
    assert deployments(k8s_emulator) == {"movies-stable": 2}
    services = {s["metadata"]["name"] for s in k8s_emulator.list("v1", "Service", "default")}
    assert services == {"movies", "movies-stable", "movies-canary"}
    assert weights(k8s_emulator) == [("movies-stable", 100)]


def test_a_canary_gets_its_exact_weight_then_promotion_replaces_stable(
    platform: KubernetesPlatform,
    job: RecommenderJob,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    v1, v2 = model("movies:v1"), model("movies:v2")
    platform.execute(job, DeployStable(v1))
    rolling = with_status(job, champion=v1, challenger=v2)
    platform.execute(rolling, StartCanary(v2, 50))
    assert deployments(k8s_emulator) == {"movies-stable": 2, "movies-canary": 1}
    assert weights(k8s_emulator) == [("movies-stable", 50), ("movies-canary", 50)]
    platform.execute(rolling, SetWeight(100))
    assert weights(k8s_emulator) == [("movies-stable", 0), ("movies-canary", 100)]
    platform.execute(rolling, Promote(v2))
    assert deployments(k8s_emulator) == {"movies-stable": 2}
    stable = k8s_emulator.get("apps/v1", "Deployment", "movies-stable") or {}
    assert stable["metadata"]["annotations"]["kuberec.io/model-version"] == "movies:v2"
    assert weights(k8s_emulator) == [("movies-stable", 100)]


def test_a_rollback_stops_the_canary_and_keeps_stable(
    platform: KubernetesPlatform,
    job: RecommenderJob,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    v1, v2 = model("movies:v1"), model("movies:v2")
    platform.execute(job, DeployStable(v1))
    rolling = with_status(job, champion=v1, challenger=v2)
    platform.execute(rolling, StartCanary(v2, 50))
    platform.execute(rolling, Rollback(v2))
    assert deployments(k8s_emulator) == {"movies-stable": 2}
    stable = k8s_emulator.get("apps/v1", "Deployment", "movies-stable") or {}
    assert stable["metadata"]["annotations"]["kuberec.io/model-version"] == "movies:v1"


def test_applying_the_same_state_twice_writes_nothing(
    platform: KubernetesPlatform,
    job: RecommenderJob,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    platform.execute(job, DeployStable(model("movies:v1")))
    before = len(k8s_emulator.requests_for("patch")) + len(k8s_emulator.requests_for("create"))
    platform.execute(job, DeployStable(model("movies:v1")))
    after = len(k8s_emulator.requests_for("patch")) + len(k8s_emulator.requests_for("create"))
    assert after == before


def test_serving_is_observed_once_the_deployments_are_rolled_out(
    platform: KubernetesPlatform, job: RecommenderJob, controller: DeploymentController,
) -> None:  # fmt: skip
    v1 = model("movies:v1")
    platform.execute(job, DeployStable(v1))
    status = JobStatus(champion=v1)
    from tests.support.operator_harness import wait_for

    seen = wait_for(lambda: (o := platform.observe(job, status).serving).healthy and o,
                    what="a healthy stable track")  # fmt: skip
    assert (seen.stable, seen.canary, seen.weight) == ("movies:v1", None, 0)
    assert seen.url == "http://movies.default.svc.cluster.local"


def test_cleanup_deletes_deployments_services_and_the_route(
    platform: KubernetesPlatform,
    job: RecommenderJob,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    platform.execute(job, DeployStable(model("movies:v1")))
    deleted = platform.cleanup(job)
    assert sorted(deleted) == ["Deployment/movies-stable", "HTTPRoute/movies", "Service/movies",
                               "Service/movies-canary", "Service/movies-stable"]  # fmt: skip
    assert deployments(k8s_emulator) == {}
    assert k8s_emulator.list(*ROUTES, "default") == []


def test_a_server_error_is_a_transient_kubernetes_error(
    platform: KubernetesPlatform,
    job: RecommenderJob,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    k8s_emulator.fail_next(1, status=500, resource="deployments")
    with pytest.raises(KubernetesUnavailable, match="500"):
        platform.execute(job, DeployStable(model("movies:v1")))
