"""GPU placement: the KubeRay RayCluster a job trains on carries the spec's placement."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from kuberec.api.spec import RecommenderJob
from kuberec.operator.kubernetes.ray_cluster import pod_templates, ray_address, ray_cluster_manifest
from tests.support.jobs import recommender_job


def _job(**training: Any) -> RecommenderJob:
    spec = {"data": {"movielens": "ml-100k"}, "training": training}
    return recommender_job("shop", spec, namespace="team-a")


def _worker(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["workerGroupSpecs"][0]


def test_gpu_workers_get_gpu_limits_and_the_spec_placement() -> None:
    job = _job(workers=4, useGpu=True, gpusPerWorker=2, nodeSelector={"pool": "h100"},
               tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
               priorityClassName="training", memoryPerWorker="32Gi")  # fmt: skip
    worker = _worker(ray_cluster_manifest(job, "kuberec:1"))
    pod = worker["template"]["spec"]
    assert worker["replicas"] == 4 and worker["groupName"] == "gpu-workers"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "32Gi"
    assert pod["nodeSelector"] == {"pool": "h100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "training"


def test_cpu_training_asks_for_no_gpu() -> None:
    pod = _worker(ray_cluster_manifest(_job(workers=2), "kuberec:1"))["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "tolerations" not in pod


def test_every_pod_template_is_a_valid_kubernetes_pod_template() -> None:
    job = _job(workers=2, useGpu=True, nodeSelector={"pool": "gpu"})
    for template in pod_templates(ray_cluster_manifest(job, "kuberec:1")):
        kubernetes_validate.validate(template, "1.33.0", strict=True)


def test_the_train_step_connects_to_the_jobs_cluster_unless_the_spec_names_one() -> None:
    assert ray_address(_job()) == "ray://shop-ray-head-svc.team-a.svc:10001"
    assert ray_address(_job(rayAddress="ray://shared:10001")) == "ray://shared:10001"
