"""The serving objects the operator builds: valid Kubernetes, labelled, owned, weighted."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import Lineage, ModelRecord
from kuberec.operator.kubernetes import manifests
from kuberec.operator.kubernetes.settings import ClusterSettings
from tests.support.jobs import recommender_job

KUBE_VERSION = "1.30"
SETTINGS = ClusterSettings(serving_image="ghcr.io/kuberec/serving:0.1.0")
GATEWAY = ClusterSettings(gateway="infra/public")


def job(name: str = "movies", replicas: int = 4, **serving: Any) -> RecommenderJob:
    spec = {"data": {"movielens": "ml-100k"}, "serving": {"replicas": replicas, **serving}}
    return recommender_job(name, spec, namespace="recs", uid="1234-abcd")


def model(version: str = "movies:v1") -> ModelRecord:
    lineage = Lineage(spec_hash="h", dataset_digest="d", interactions=1, pipeline_run="r",
                      code_version="0", trained_at="2026-01-01T00:00:00+00:00")  # fmt: skip
    return ModelRecord(version=version, uri=f"s3://kuberec/artifacts/{version}.bentomodel",
                       model_type="ease_t", lineage=lineage)  # fmt: skip


def every_manifest(j: RecommenderJob) -> list[dict[str, Any]]:
    return [
        manifests.deployment(j, "stable", model(), 3, 0, SETTINGS),
        manifests.deployment(j, "canary", model("movies:v2"), 1, 25, SETTINGS),
        manifests.service(j),
        manifests.track_service(j, "stable"),
        manifests.track_service(j, "canary"),
    ]


def test_every_manifest_is_valid_kubernetes() -> None:
    j = job(resources={"cpu": "500m", "memory": "1Gi"})
    for manifest in every_manifest(j):
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


def test_the_http_route_has_the_gateway_api_shape() -> None:
    # kubernetes-validate ships no Gateway API schemas: check the v1 HTTPRoute fields by hand.
    route = manifests.http_route(job(), 25, GATEWAY)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io",
                                            "kind": "Gateway", "name": "public",
                                            "namespace": "infra"}]  # fmt: skip
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/recs/movies"}}]
    assert rule["filters"][0]["type"] == "URLRewrite"
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("movies-stable", 80, 75),
        ("movies-canary", 80, 25),
    ]


def test_without_a_canary_the_route_sends_everything_to_stable() -> None:
    (rule,) = manifests.http_route(job(), 0, GATEWAY)["spec"]["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("movies-stable", 100)]


def test_the_scraped_service_carries_the_labels_and_port_the_service_monitor_selects() -> None:
    service = manifests.service(job())
    labels = service["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "kuberec"
    assert labels["app.kubernetes.io/component"] == "serving"
    assert service["spec"]["ports"][0]["name"] == "http"
    assert service["spec"]["selector"] == {"kuberec.io/job": "movies"}


def test_track_services_are_not_scraped_twice() -> None:
    labels = manifests.track_service(job(), "canary")["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] != "serving"


def test_every_object_is_owned_by_its_job() -> None:
    for manifest in [*every_manifest(job()), manifests.http_route(job(), 10, GATEWAY)]:
        (owner,) = manifest["metadata"]["ownerReferences"]
        assert owner == {"apiVersion": "kuberec.io/v1alpha1", "kind": "RecommenderJob",
                         "name": "movies", "uid": "1234-abcd", "controller": True,
                         "blockOwnerDeletion": True}  # fmt: skip
        assert manifest["metadata"]["labels"]["kuberec.io/job"] == "movies"


def test_the_serving_container_fetches_its_model_from_the_artifact_uri() -> None:
    deployment = manifests.deployment(job(), "stable", model(), 3, 0, SETTINGS)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/kuberec/serving:0.1.0"
    assert container["command"] == ["kuberec"]
    assert container["args"][:2] == ["serve", "$(KUBEREC_MODEL)"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEREC_MODEL"] == "s3://kuberec/artifacts/movies:v1.bentomodel"
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert deployment["metadata"]["annotations"]["kuberec.io/model-version"] == "movies:v1"


def test_the_serving_container_gets_the_jobs_ranking() -> None:
    ranking = {"diversity": 0.1, "maxPerCategory": 3, "pinned": [50]}
    deployment = manifests.deployment(job(ranking=ranking), "stable", model(), 1, 0, SETTINGS)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["KUBEREC_RANKING"]) == ranking


def test_the_serving_container_writes_feedback_to_the_jobs_sink() -> None:
    document = job().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["feedback"] = {"sink": "s3://kuberec/feedback/movies"}
    sinked = RecommenderJob.model_validate(document)
    deployment = manifests.deployment(sinked, "stable", model(), 1, 0, SETTINGS)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEREC_FEEDBACK_SINK"] == "s3://kuberec/feedback/movies"
    assert env["KUBEREC_FEEDBACK_QUEUE"] == "10000"


def test_resources_come_from_spec_serving() -> None:
    deployment = manifests.deployment(job(resources={"cpu": "2", "memory": "4Gi"}), "stable",
                                      model(), 1, 0, SETTINGS)  # fmt: skip
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                                      "limits": {"memory": "4Gi"}}  # fmt: skip


@pytest.mark.parametrize(("weight", "expected"), [
    (0, {"stable": 4, "canary": 0}), (10, {"stable": 3, "canary": 1}),
    (50, {"stable": 2, "canary": 2}), (100, {"stable": 0, "canary": 4}),
])  # fmt: skip
def test_without_a_gateway_the_replica_ratio_is_the_weight(
    weight: int, expected: dict[str, int]
) -> None:
    assert manifests.replicas_for(job(replicas=4), weight, gateway=False) == expected


def test_with_a_gateway_stable_keeps_its_size() -> None:
    assert manifests.replicas_for(job(replicas=4), 25, gateway=True) == {"stable": 4, "canary": 1}


def test_long_job_names_still_give_dns_labels() -> None:
    name = "a" * 63
    for suffix in ("", "stable", "canary"):
        made = manifests.name_for(job(name), suffix)
        assert len(made) <= 63 and made.endswith(suffix)
    service = manifests.service(job(name))
    kubernetes_validate.validate(service, KUBE_VERSION, strict=True)


def test_the_content_hash_changes_only_with_the_content() -> None:
    same = [manifests.deployment(job(), "stable", model(), 3, 0, SETTINGS) for _ in range(2)]
    other = manifests.deployment(job(), "stable", model("movies:v2"), 3, 0, SETTINGS)
    hashes = [m["metadata"]["annotations"][manifests.HASH_ANNOTATION] for m in [*same, other]]
    assert hashes[0] == hashes[1] != hashes[2]


def test_a_production_profile_pod_gets_what_it_renders_the_pipelines_feast_repo_from() -> None:
    document = job().model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["features"] = {"profile": "production"}
    settings = ClusterSettings(
        feast_registry="postgresql+psycopg://feast@pg/feast", feast_redis="redis.feast:6379"
    )
    deployment = manifests.deployment(
        RecommenderJob.model_validate(document), "stable", model(), 1, 0, settings
    )
    kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBEREC_FEAST_REPO"].startswith("/tmp/")  # the pod's writable emptyDir
    assert (env["KUBEREC_FEAST_PROJECT"], env["KUBEREC_FEAST_PROFILE"]) == ("movies", "production")
    assert env["KUBEREC_FEAST_REDIS"] == "redis.feast:6379"
    assert env["KUBEREC_FEAST_REGISTRY"] == "postgresql+psycopg://feast@pg/feast"


def test_a_default_profile_pod_gets_no_feast_repo() -> None:
    deployment = manifests.deployment(job(), "stable", model(), 1, 0, SETTINGS)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert not {"KUBEREC_FEAST_REPO", "KUBEREC_FEAST_REGISTRY"} & {
        e["name"] for e in container["env"]
    }
