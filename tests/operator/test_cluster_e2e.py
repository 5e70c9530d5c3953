"""Opt-in end to end on a real cluster (``pytest -m cluster``), through KUBECONFIG.

Expects kuberec installed with the Helm chart (CRD + operator) and its platform
(KFP, Prometheus, an artifact store) reachable from the cluster. Skipped when
no cluster is configured, and when KUBECONFIG points at the test emulator.

  KUBECONFIG=~/.kube/config .venv/bin/python -m pytest -m cluster tests/operator/test_cluster_e2e.py

Settings: ``KUBEREC_E2E_NAMESPACE`` (default ``default``: the operator's watched
namespace), ``KUBEREC_E2E_TIMEOUT`` seconds until Serving (default 1800).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.jobs import job_document

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "kuberec.io", "v1alpha1", "recommenderjobs"
NAMESPACE = os.environ.get("KUBEREC_E2E_NAMESPACE", "default")
TIMEOUT = float(os.environ.get("KUBEREC_E2E_TIMEOUT", "1800"))


def _cluster_client() -> Any:
    """An ApiClient for the configured cluster, or a skip saying why there is none."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not os.environ.get("KUBECONFIG") and not Path(path).exists():
        pytest.skip("no cluster: set KUBECONFIG to run the cluster suite")
    try:
        _contexts, current = config.list_kube_config_contexts(config_file=path)
        api = config.new_client_from_config(config_file=path)
    except (ConfigException, OSError) as exc:
        pytest.skip(f"no usable kubeconfig at {path}: {exc}")
    token = (api.configuration.api_key or {}).get("authorization", "")
    if "kuberec-emulator-token" in token or (current or {}).get("name") == "emulator":
        pytest.skip("KUBECONFIG points at the test emulator, not a cluster")
    try:
        client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:
        pytest.skip(f"the cluster in {path} does not answer: {exc}")
    return api


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    client = _cluster_client()
    yield client
    client.close()


@pytest.fixture
def job_name(api: Any) -> Iterator[str]:
    from kubernetes import client

    name = f"e2e-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name
        )
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    body = {"data": {"movielens": "ml-100k"}, "training": {"backend": "local", "epochs": 2},
            "serving": {"replicas": 1}, **spec}  # fmt: skip
    return job_document(name, body, namespace=NAMESPACE)


def wait_phase(api: Any, name: str, phases: set[str], timeout: float) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                                     name).get("status") or {}  # fmt: skip
        if status.get("phase") in phases:
            return status
        time.sleep(5)
    raise AssertionError(f"{name} did not reach {sorted(phases)}; last status: {status}")


def test_the_crd_rejects_an_invalid_job(api: Any) -> None:
    from kubernetes import client

    bad = manifest(
        "e2e-invalid",
        data={"movielens": "ml-100k", "synthetic": {"users": 1, "items": 1, "interactions": 1}},
    )
    with pytest.raises(client.ApiException) as caught:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, bad, dry_run="All"
        )
    assert caught.value.status == 422
    assert "set exactly one of movielens, interactions, synthetic" in str(caught.value.body)


def test_a_job_is_trained_and_served(api: Any, job_name: str) -> None:
    from kubernetes import client

    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, manifest(job_name)
    )
    status = wait_phase(api, job_name, {"Training", "Evaluating", "Serving", "Failed"}, 120)
    assert status["phase"] != "Failed", status
    status = wait_phase(api, job_name, {"Serving", "Failed", "Rejected"}, TIMEOUT)
    assert status["phase"] == "Serving", status
    assert status["url"].startswith(f"http://{job_name}.{NAMESPACE}.svc")
    deployments = (
        client.AppsV1Api(api)
        .list_namespaced_deployment(NAMESPACE, label_selector=f"kuberec.io/job={job_name}")
        .items
    )
    assert [d.metadata.name for d in deployments] == [f"{job_name}-stable"]


def test_deleting_a_job_removes_its_serving_objects(api: Any, job_name: str) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest(job_name))
    wait_phase(api, job_name, {"Training", "Evaluating", "Serving", "Failed"}, 120)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, job_name)
    deadline = time.monotonic() + 120
    selector = f"kuberec.io/job={job_name}"
    while time.monotonic() < deadline:
        left = (
            client.AppsV1Api(api)
            .list_namespaced_deployment(NAMESPACE, label_selector=selector)
            .items
        )
        services = (
            client.CoreV1Api(api).list_namespaced_service(NAMESPACE, label_selector=selector).items
        )
        if not left and not services:
            return
        time.sleep(3)
    raise AssertionError(f"{job_name}'s Deployments/Services were not removed")
