"""Pure builders of the Kubernetes objects that serve a RecommenderJob's models.

One Deployment per *track* (``stable``: the champion; ``canary``: the
challenger during a rollout), each running the generic serving image, which
fetches its model from the artifact URI in ``KUBEREC_MODEL``. A Service in
front of both tracks is what the ServiceMonitor scrapes and what in-cluster
clients call. Traffic is split one of two ways:

* with a Gateway (``KUBEREC_GATEWAY``): an HTTPRoute with exact weights over
  two per-track Services;
* without one: by replica ratio behind the shared Service (coarse: one replica
  of each is 50/50).

Every object carries the kuberec labels and an ownerReference to the job, so
deleting the job collects them even without the operator. Nothing here does
I/O: the platform applies these dictionaries, tests validate them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Literal

from kuberec.api.spec import API_VERSION, RecommenderJob
from kuberec.api.status import ModelRecord
from kuberec.operator.crd import KIND
from kuberec.operator.kubernetes.settings import ClusterSettings
from kuberec.serving.feast_repo import FEAST_REPO_ENV, PROFILE_ENV, PROJECT_ENV, REPO_FOLDER
from kuberec.serving.feedback_settings import feedback_env

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")
SERVING_PORT = 3000
SERVICE_PORT = 80
JOB_LABEL = "kuberec.io/job"
TRACK_LABEL = "kuberec.io/track"
VERSION_ANNOTATION = "kuberec.io/model-version"
URI_ANNOTATION = "kuberec.io/model-uri"
WEIGHT_ANNOTATION = "kuberec.io/weight"
HASH_ANNOTATION = "kuberec.io/manifest-hash"
MANAGED_BY = "kuberec-operator"
FEAST_REPO_PATH = f"/tmp/kuberec/{REPO_FOLDER}"  # on the pod's writable emptyDir
REDIS_ENV = "KUBEREC_FEAST_REDIS"  # components/features/store.py reads both (kept out of
REGISTRY_ENV = "KUBEREC_FEAST_REGISTRY"  # the operator's imports: that module imports Feast)
GATEWAY_API = "gateway.networking.k8s.io/v1"


def job_labels(job: RecommenderJob) -> dict[str, str]:
    """What selects everything the operator made for one job (cleanup, observation)."""
    return {JOB_LABEL: job.metadata.name}


def selector(job: RecommenderJob) -> str:
    return f"{JOB_LABEL}={job.metadata.name}"


def common_labels(job: RecommenderJob, component: str = "serving") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kuberec-serving",
        "app.kubernetes.io/instance": job.metadata.name,
        "app.kubernetes.io/part-of": "kuberec",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **job_labels(job),
    }


def owner_reference(job: RecommenderJob) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": KIND, "name": job.metadata.name,
        "uid": job.metadata.uid or "", "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip


def name_for(job: RecommenderJob, suffix: str = "") -> str:
    """A DNS-1035 label (Services need one): ``<job>[-suffix]``, shortened with a hash if long."""
    base = job.metadata.name if job.metadata.name[0].isalpha() else f"rj-{job.metadata.name}"
    name = f"{base}-{suffix}" if suffix else base
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    keep = 63 - len(digest) - 1 - (len(suffix) + 1 if suffix else 0)
    head = base[:keep].rstrip("-")
    return f"{head}-{digest}-{suffix}" if suffix else f"{head}-{digest}"


def deployment_name(job: RecommenderJob, track: Track) -> str:
    return name_for(job, track)


def service_name(job: RecommenderJob) -> str:
    return name_for(job)


def track_service_name(job: RecommenderJob, track: Track) -> str:
    return name_for(job, track)


def label_value(text: str) -> str:
    """A label value (<= 63 of [A-Za-z0-9._-], alphanumeric at both ends) close to ``text``."""
    value = re.sub(r"[^A-Za-z0-9._-]", ".", text)[:63]
    return value.strip("._-") or "none"


def replicas_for(job: RecommenderJob, weight: int, gateway: bool) -> dict[Track, int]:
    """Replicas per track for a canary ``weight`` (percent).

    With a Gateway the weights are exact, so the stable track keeps its size and
    the canary gets a share proportional to its weight. Without one, the split is
    the replica ratio: ``ceil(N * w%)`` canary pods, the rest stable (at least
    one of each below 100%, none stable at 100%).
    """
    total = job.spec.serving.replicas
    if weight <= 0:
        return {"stable": total, "canary": 0}
    canary = min(total, max(1, math.ceil(total * weight / 100)))
    if gateway:
        return {"stable": total, "canary": canary}
    if weight >= 100:
        return {"stable": 0, "canary": total}
    return {"stable": max(1, total - canary), "canary": canary}


def feast_store_env(job: RecommenderJob, settings: ClusterSettings) -> dict[str, str]:
    """The shared Feast stores (the chart's ``platform.feastRedis`` / ``feastRegistry``) that
    the pipeline's steps fill and the serving pods read: the same values in both, so both
    render the same ``feature_store.yaml``.

    Only with ``spec.features.profile: production`` (Redis and a registry service both
    reach): the default profile's registry and online store are SQLite files in the
    pipeline's pod, which no serving pod can open, so then nothing is set.
    """
    if job.spec.features.profile != "production":
        return {}
    stores = {REGISTRY_ENV: settings.feast_registry, REDIS_ENV: settings.feast_redis}
    return {name: value for name, value in stores.items() if value}


def feast_env(job: RecommenderJob, settings: ClusterSettings) -> dict[str, str]:
    """What a serving pod renders the job's Feast repo from (:mod:`kuberec.serving.feast_repo`):
    the recent items it reads and the feedback it pushes go to the stores the pipeline filled.
    Nothing for the default profile (:func:`feast_store_env`).
    """
    if job.spec.features.profile != "production":
        return {}
    return {
        FEAST_REPO_ENV: FEAST_REPO_PATH,
        PROJECT_ENV: job.metadata.name,
        PROFILE_ENV: job.spec.features.profile,
        **feast_store_env(job, settings),
    }


def deployment(
    job: RecommenderJob, track: Track, model: ModelRecord, replicas: int, weight: int,
    settings: ClusterSettings,
) -> dict[str, Any]:  # fmt: skip
    """One track's Deployment: the serving image, fetching ``model.uri`` at start."""
    resources = _resources(job)
    pod_labels = {**common_labels(job), TRACK_LABEL: track,
                  "kuberec.io/model": label_value(model.version)}  # fmt: skip
    container = {
        "name": "serving",
        "image": settings.serving_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["kuberec"],
        "args": ["serve", "$(KUBEREC_MODEL)", "--host", "0.0.0.0", "--port", str(SERVING_PORT)],
        "env": [
            {"name": "KUBEREC_MODEL", "value": model.uri},
            {"name": "KUBEREC_MODEL_VERSION", "value": model.version},
            {"name": "KUBEREC_TRACK", "value": track},
            {"name": "KUBEREC_RANKING", "value": job.spec.serving.ranking.to_json()},
            *({"name": k, "value": v} for k, v in feedback_env(
                job.spec.feedback, job.spec.feedback.sink).items()),  # a URI the pods share
            *({"name": k, "value": v} for k, v in feast_env(job, settings).items()),
            {"name": "HOME", "value": "/tmp"},
        ],
        # Object-store credentials, when the artifact store needs them (optional).
        "envFrom": [{"secretRef": {"name": "kuberec-artifact-store", "optional": True}}],
        "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 60, "periodSeconds": 15, "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "resources": resources,
        "securityContext": {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }  # fmt: skip
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(job, track),
            "namespace": job.metadata.namespace,
            "labels": {**common_labels(job), TRACK_LABEL: track},
            "annotations": {
                VERSION_ANNOTATION: model.version, URI_ANNOTATION: model.uri,
                WEIGHT_ANNOTATION: str(weight),
            },
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**job_labels(job), TRACK_LABEL: track}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        VERSION_ANNOTATION: model.version,
                        "prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                        "prometheus.io/port": str(SERVING_PORT),
                    },
                },
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "fsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
                },
            },
        },
    }  # fmt: skip
    return with_hash(manifest)


def service(job: RecommenderJob) -> dict[str, Any]:
    """The job's Service over both tracks: scraped by the ServiceMonitor, called in-cluster."""
    return with_hash(_service(job, service_name(job), common_labels(job), job_labels(job)))


def track_service(job: RecommenderJob, track: Track) -> dict[str, Any]:
    """A Service over one track, the HTTPRoute's backend (not scraped: the job Service is)."""
    labels = {**common_labels(job, "serving-backend"), TRACK_LABEL: track}
    return with_hash(_service(job, track_service_name(job, track), labels,
                              {**job_labels(job), TRACK_LABEL: track}))  # fmt: skip


def http_route(job: RecommenderJob, weight: int, settings: ClusterSettings) -> dict[str, Any]:
    """Gateway API route ``/<namespace>/<job>/...`` -> the tracks, weighted exactly."""
    ref = settings.gateway_ref
    if ref is None:
        raise ValueError("http_route needs a gateway (KUBEREC_GATEWAY=namespace/name)")
    gateway_namespace, gateway_name = ref
    prefix = f"/{job.metadata.namespace}/{job.metadata.name}"
    backends = [
        {"name": track_service_name(job, "stable"), "port": SERVICE_PORT, "weight": 100 - weight},
    ]
    if weight > 0:
        backends.append(
            {"name": track_service_name(job, "canary"), "port": SERVICE_PORT, "weight": weight}
        )
    manifest = {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {
            "name": service_name(job),
            "namespace": job.metadata.namespace,
            "labels": common_labels(job, "serving-route"),
            "annotations": {WEIGHT_ANNOTATION: str(weight)},
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            "name": gateway_name, "namespace": gateway_namespace}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                "backendRefs": backends,
            }],
        },
    }  # fmt: skip
    return with_hash(manifest)


def service_url(job: RecommenderJob) -> str:
    return f"http://{service_name(job)}.{job.metadata.namespace}.svc.cluster.local"


def with_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp the manifest's content hash, so an unchanged object is never written again."""
    text = json.dumps(manifest, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    annotations = {**manifest["metadata"].get("annotations", {}), HASH_ANNOTATION: digest}
    return {**manifest, "metadata": {**manifest["metadata"], "annotations": annotations}}


def _service(job: RecommenderJob, name: str, labels: dict[str, str],
             select: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": job.metadata.namespace, "labels": labels,
                     "ownerReferences": [owner_reference(job)]},
        "spec": {
            "type": "ClusterIP",
            "selector": select,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http",
                       "protocol": "TCP"}],
        },
    }  # fmt: skip


def _resources(job: RecommenderJob) -> dict[str, Any]:
    wanted = job.spec.serving.resources
    requests = {k: v for k, v in (("cpu", wanted.cpu), ("memory", wanted.memory)) if v}
    limits = {"memory": wanted.memory} if wanted.memory else {}
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
