"""GPU placement in a cluster: a KubeRay ``RayCluster`` per job, and the address to train on.

The choice: the KFP train step is a Ray *client* of a Ray cluster, not the
place where training runs. With ``spec.training.rayAddress`` set, that is the
team's own cluster; without it, the Kubernetes platform applies the manifest
below (owned by the RecommenderJob, so deleting the job deletes it) and the
step connects to its head service. The worker group carries the spec's
placement: ``nodeSelector``, ``tolerations``, ``priorityClassName`` and
``nvidia.com/gpu`` limits, so GPU node pools are used only by Ray workers while
the lightweight KFP pods stay on CPU nodes. A long-lived cluster per job keeps
datasets and Ray's object store warm between retrains; KubeRay scales workers
to zero when idle (``minReplicas: 0``).
"""

from __future__ import annotations

import math
from typing import Any

import ray

from kuberec.api.spec import RecommenderJob, TrainingSpec

CLIENT_PORT = 10001


def cluster_name(job: RecommenderJob) -> str:
    return f"{job.metadata.name}-ray"[:63]


def ray_address(job: RecommenderJob) -> str:
    """The address the train step connects to: the spec's, or this job's RayCluster."""
    if job.spec.training.ray_address:
        return job.spec.training.ray_address
    return f"ray://{cluster_name(job)}-head-svc.{job.metadata.namespace}.svc:{CLIENT_PORT}"


def ray_cluster_manifest(job: RecommenderJob, image: str) -> dict[str, Any]:
    training = job.spec.training
    labels = {
        "app.kubernetes.io/part-of": "kuberec",
        "app.kubernetes.io/component": "training",
        "kuberec.io/job": job.metadata.name,
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": cluster_name(job),
            "namespace": job.metadata.namespace,
            "labels": labels,
        },
        "spec": {
            "rayVersion": ray.__version__,
            "enableInTreeAutoscaling": True,
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [_head_container(image)]},
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu-workers" if _gpus(training) else "cpu-workers",
                    "replicas": training.workers,
                    "minReplicas": 0,
                    "maxReplicas": training.workers,
                    "rayStartParams": {},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": _worker_pod(training, image),
                    },
                }
            ],
        },
    }


def pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The head and worker pod templates, as core/v1 PodTemplates (for schema validation)."""
    spec = manifest["spec"]
    groups = [("head", spec["headGroupSpec"])] + [
        (g["groupName"], g) for g in spec["workerGroupSpecs"]
    ]
    return [
        {"apiVersion": "v1", "kind": "PodTemplate",
         "metadata": {"name": f"{manifest['metadata']['name']}-{name}"},
         "template": group["template"]}
        for name, group in groups
    ]  # fmt: skip


def _gpus(training: TrainingSpec) -> int:
    if training.gpus_per_worker:
        return math.ceil(training.gpus_per_worker)
    return 1 if training.use_gpu else 0


def _head_container(image: str) -> dict[str, Any]:
    return {
        "name": "ray-head",
        "image": image,
        "ports": [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": CLIENT_PORT, "name": "client"},
        ],
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"},
        },
    }


def _worker_pod(training: TrainingSpec, image: str) -> dict[str, Any]:
    cpus = str(max(1, math.ceil(training.cpus_per_worker)))
    limits: dict[str, str] = {"cpu": cpus, "memory": training.memory_per_worker or "4Gi"}
    gpus = _gpus(training)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    pod: dict[str, Any] = {
        "containers": [{
            "name": "ray-worker", "image": image,
            "resources": {"requests": dict(limits), "limits": limits},
        }],
    }  # fmt: skip
    if training.node_selector:
        pod["nodeSelector"] = dict(training.node_selector)
    if training.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in training.tolerations]
    elif gpus:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists",
                               "effect": "NoSchedule"}]  # fmt: skip
    if training.priority_class_name:
        pod["priorityClassName"] = training.priority_class_name
    return pod
