"""Launching a run on Kubernetes first gives the job its KubeRay RayCluster (GPU placement)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kuberec.api.spec import RecommenderJob
from kuberec.errors import KuberecError
from kuberec.operator.actions import LaunchRun
from kuberec.operator.kubernetes.platform import KubernetesPlatform
from kuberec.operator.kubernetes.settings import ClusterSettings
from tests.k8s_emulator import KubeEmulator
from tests.k8s_emulator.fixtures import (  # noqa: F401
    k8s_client,
    k8s_emulator,
    k8s_kubeconfig,
    load_chart_crds,
)
from tests.support.kfp_standin import KfpStandIn
from tests.support.operator_harness import install_kuberay, job_manifest, typed_job

GPU_TRAINING = {"backend": "ray", "workers": 2, "useGpu": True, "nodeSelector": {"pool": "gpu"}}


@pytest.fixture
def platform(k8s_client: client.ApiClient, kfp: KfpStandIn,  # noqa: F811
             tmp_path: Path) -> KubernetesPlatform:  # fmt: skip
    settings = ClusterSettings(kfp_endpoint=kfp.url, artifact_store=tmp_path.as_uri())
    return KubernetesPlatform(settings, k8s_client)


def _job(emulator: KubeEmulator, **training: Any) -> RecommenderJob:
    emulator.apply(job_manifest("shop", training=training))
    return typed_job(emulator, "shop")


def _launch(platform: KubernetesPlatform, job: RecommenderJob) -> None:
    platform.launch(job, LaunchRun(key="k1", champion_uri="", reason="initial training"))


def test_a_launch_creates_the_jobs_ray_cluster_with_gpu_placement(
    k8s_emulator: KubeEmulator,  # noqa: F811
    platform: KubernetesPlatform,
    kfp: KfpStandIn,
) -> None:
    load_chart_crds(k8s_emulator)
    install_kuberay(k8s_emulator)
    job = _job(k8s_emulator, **GPU_TRAINING)
    _launch(platform, job)
    cluster = k8s_emulator.get("ray.io/v1", "RayCluster", "shop-ray", "default")
    assert cluster is not None
    assert cluster["metadata"]["ownerReferences"][0]["name"] == "shop"
    worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["nodeSelector"] == {"pool": "gpu"}
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    context = json.loads(next(iter(kfp.runs.values()))["runtime_config"]["parameters"]["context"])
    assert context["ray_address"] == "ray://shop-ray-head-svc.default.svc:10001"


def test_a_job_naming_its_own_ray_cluster_gets_none_created(
    k8s_emulator: KubeEmulator,  # noqa: F811
    platform: KubernetesPlatform,
    kfp: KfpStandIn,
) -> None:
    load_chart_crds(k8s_emulator)
    install_kuberay(k8s_emulator)
    job = _job(k8s_emulator, backend="ray", rayAddress="ray://team-ray:10001")
    _launch(platform, job)
    assert k8s_emulator.get("ray.io/v1", "RayCluster", "shop-ray", "default") is None
    context = json.loads(next(iter(kfp.runs.values()))["runtime_config"]["parameters"]["context"])
    assert context["ray_address"] == "ray://team-ray:10001"


def test_without_kuberay_the_error_says_what_to_install_and_nothing_is_submitted(
    k8s_emulator: KubeEmulator,  # noqa: F811
    platform: KubernetesPlatform,
    kfp: KfpStandIn,
) -> None:
    load_chart_crds(k8s_emulator)
    job = _job(k8s_emulator, **GPU_TRAINING)
    with pytest.raises(KuberecError, match=r"KubeRay is not installed.*rayAddress"):
        _launch(platform, job)
    assert kfp.runs == {}
