"""The Kubernetes platform: KFP runs, serving Deployments/Services/HTTPRoute, Prometheus traffic.

It implements the same ``Platform`` protocol as the local platform
(``operator/local/loop.py``), so the kopf operator runs the very reconcile function
``kuberec run`` runs. Every action is idempotent:

* ``LaunchRun`` submits through ``operator/kubernetes/kfp_client.py``, which finds an
  existing run by its display name (``<job>-<key>``) before creating one;
* serving actions *apply* manifests (``operator/kubernetes/manifests.py``): an object
  whose content hash is unchanged is not written again.

Transient trouble surfaces as typed errors (``KfpUnavailable``,
``PrometheusUnavailable``, ``KubernetesUnavailable``) that the handlers turn
into a condition and a retry with backoff, never into a second launch.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from kuberec.api.spec import GROUP, VERSION, RecommenderJob
from kuberec.api.status import JobStatus, ModelRecord
from kuberec.errors import KuberecError
from kuberec.operator.actions import (
    Action,
    DeployStable,
    LaunchRun,
    PauseServing,
    Promote,
    Rollback,
    SetWeight,
    StartCanary,
)
from kuberec.operator.crd import PLURAL
from kuberec.operator.kubernetes import manifests
from kuberec.operator.kubernetes.data import TRAINED_DATA_ANNOTATION, DataWatcher
from kuberec.operator.kubernetes.kfp_client import KfpUnavailable
from kuberec.operator.kubernetes.manifests import Track
from kuberec.operator.kubernetes.prometheus import Prometheus
from kuberec.operator.kubernetes.ray_cluster import ray_address, ray_cluster_manifest
from kuberec.operator.kubernetes.settings import ClusterSettings
from kuberec.operator.observations import Observations, RunObservation, ServingObservation
from kuberec.pipelines.context import RunContext
from kuberec.pipelines.pipeline import IMAGE

log = logging.getLogger(__name__)


class KubernetesUnavailable(KuberecError):
    """The API server refused (5xx, 429, 409) or could not be reached; retried with backoff."""


class KubernetesForbidden(KuberecError):
    """403: RBAC does not grant the operator's ServiceAccount this verb; retried with backoff
    (an admin can fix the Role while the operator runs), reported as a condition and an Event."""


class KubernetesNotFound(KuberecError):
    """404: the object, or the whole resource type (a CRD not installed), does not exist."""


class KubernetesPlatform:
    """Holds the API clients (connection pools) for every job the operator reconciles."""

    def __init__(self, settings: ClusterSettings, api_client: Any = None,
                 runs: Any = None) -> None:  # fmt: skip
        from kubernetes import client

        self.settings = settings
        self.api_client = api_client or client.ApiClient()
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.prometheus = Prometheus(settings.prometheus_url)
        self.data = DataWatcher(settings.data_poll_s)
        self._runs = runs
        self._runs_lock = threading.Lock()
        self._fingerprints: dict[str, str] = {}

    # --- observe ---------------------------------------------------------------------------------

    def observe(self, job: RecommenderJob, status: JobStatus) -> Observations:
        now = datetime.now(UTC)
        run = None
        if status.run_in_flight:
            run = self.observe_run(job, status.pipeline_run.key)  # type: ignore[union-attr]
        trained = _annotations(job).get(TRAINED_DATA_ANNOTATION)
        data = self.data.observe(job, status, trained)
        if data is not None and data.digest.startswith("fp:"):
            self._fingerprints[_ref(job)] = data.digest[3:]
        return Observations(now=now, data=data, run=run,
                            serving=self.observe_serving(job, status, now))  # fmt: skip

    def observe_run(self, job: RecommenderJob, key: str) -> RunObservation | None:
        return self.runs().observe(job, key)

    def observe_serving(self, job: RecommenderJob, status: JobStatus, now: datetime
                        ) -> ServingObservation:  # fmt: skip
        if status.champion is None and status.rollout is None:
            return ServingObservation(enabled=True)  # nothing served yet: no API call
        found = self._deployments(job)
        stable, canary = found.get("stable"), found.get("canary")
        stable_version = _version(stable)
        canary_version = _version(canary) if canary is not None and _ready(canary) else None
        healthy = stable is not None and (_replicas(stable) == 0 or _ready(stable))
        weight = int(_annotation(canary, manifests.WEIGHT_ANNOTATION) or 0) if canary else 0
        traffic = {}
        rollout = status.rollout
        if rollout is not None and canary_version is not None and _analysis_due(job, status, now):
            started = datetime.fromisoformat(rollout.window_started_at)
            versions = {"stable": stable_version or "", "canary": canary_version}
            traffic = self.prometheus.window(job.metadata.namespace, versions,
                                             (now - started).total_seconds())  # fmt: skip
        return ServingObservation(
            enabled=True, stable=stable_version, canary=canary_version, weight=weight,
            url=manifests.service_url(job) if healthy else None, healthy=healthy,
            traffic=traffic,
        )  # fmt: skip

    # --- act -------------------------------------------------------------------------------------

    def execute(self, job: RecommenderJob, action: Action) -> None:
        status = job.status or JobStatus()
        if isinstance(action, LaunchRun):
            self.launch(job, action)
        elif isinstance(action, DeployStable):
            self._serve(job, stable=action.model, canary=None, weight=0)
        elif isinstance(action, StartCanary):
            self._serve(job, stable=status.champion, canary=action.model, weight=action.weight)
        elif isinstance(action, SetWeight):
            self._serve(job, stable=status.champion, canary=status.challenger,
                        weight=action.weight)  # fmt: skip
        elif isinstance(action, Promote):
            self._serve(job, stable=action.model, canary=None, weight=0)
        elif isinstance(action, Rollback):
            self._serve(job, stable=status.champion, canary=None, weight=0)
        elif isinstance(action, PauseServing):
            return  # weights stay where they are; nothing to write

    def launch(self, job: RecommenderJob, action: LaunchRun) -> str:
        """Submit the run for ``action.key`` (the existing run's id if it was submitted before)."""
        name, namespace = job.metadata.name, job.metadata.namespace
        root = self.settings.artifact_store.rstrip("/")
        self._ensure_ray_cluster(job)
        context = RunContext(
            run_id=f"{name}-{action.key}", run_key=action.key, artifact_root=root,
            feature_store_dir=f"/tmp/kuberec/{namespace}/{name}/data",
            champion_uri=action.champion_uri, ray_address=ray_address(job),
        )  # fmt: skip
        run_id = self.runs().submit(job, context)
        fingerprint = self._fingerprints.get(_ref(job))
        recorded = _annotations(job).get(TRAINED_DATA_ANNOTATION)
        if fingerprint is not None and recorded != fingerprint:
            body = {"metadata": {"annotations": {TRAINED_DATA_ANNOTATION: fingerprint}}}
            self._call(self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                       PLURAL, name, body)  # fmt: skip
        return run_id

    def _ensure_ray_cluster(self, job: RecommenderJob) -> None:
        """The job's KubeRay RayCluster (GPU placement from the spec), unless it names its own."""
        if job.spec.training.ray_address:
            return
        manifest = ray_cluster_manifest(job, os.environ.get("KUBEREC_IMAGE", IMAGE))
        manifest["metadata"]["ownerReferences"] = [manifests.owner_reference(job)]
        try:
            self._apply(manifests.with_hash(manifest))
        except KubernetesNotFound as exc:
            raise KuberecError(
                "KubeRay is not installed (no ray.io/v1 RayCluster resource): install the "
                "KubeRay operator, or set spec.training.rayAddress to an existing Ray cluster"
            ) from exc

    def cleanup(self, job: RecommenderJob, running_key: str | None = None) -> list[str]:
        """Delete what the operator created for ``job`` (the finalizer's work); names deleted.

        A pipeline run still in flight (``running_key``) is terminated first, best
        effort: an unreachable KFP must not keep a deleted job alive forever.
        """
        namespace, select = job.metadata.namespace, manifests.selector(job)
        deleted: list[str] = []
        if running_key:
            try:
                if self.runs().cancel(job, running_key):
                    deleted.append(f"KFP run {job.metadata.name}-{running_key} (terminated)")
            except KuberecError as exc:
                log.warning("%s: pipeline run %s left running: %s", job.metadata.name,
                            running_key, exc)  # fmt: skip
        listed = self._call(self.apps.list_namespaced_deployment, namespace, label_selector=select)
        for item in listed.items:
            self._delete(self.apps.delete_namespaced_deployment, item.metadata.name, namespace)
            deleted.append(f"Deployment/{item.metadata.name}")
        listed = self._call(self.core.list_namespaced_service, namespace, label_selector=select)
        for item in listed.items:
            self._delete(self.core.delete_namespaced_service, item.metadata.name, namespace)
            deleted.append(f"Service/{item.metadata.name}")
        if self.settings.gateway_ref is not None:
            routes = self._call(self.custom.list_namespaced_custom_object,
                                "gateway.networking.k8s.io", "v1", namespace, "httproutes",
                                label_selector=select)  # fmt: skip
            for item in routes.get("items", []):
                route = item["metadata"]["name"]
                self._call_ignoring_404(self.custom.delete_namespaced_custom_object,
                                        "gateway.networking.k8s.io", "v1", namespace,
                                        "httproutes", route)  # fmt: skip
                deleted.append(f"HTTPRoute/{route}")
        return deleted

    def runs(self) -> Any:
        """The KFP client, built on first use (building it already talks to KFP)."""
        with self._runs_lock:
            if self._runs is None:
                from kfp_server_api.exceptions import ApiException
                from urllib3.exceptions import HTTPError

                from kuberec.operator.kubernetes.kfp_client import KfpRuns

                if not self.settings.kfp_endpoint:
                    raise KfpUnavailable("KUBEREC_KFP_ENDPOINT is not set")
                _kfp_healthy(self.settings.kfp_endpoint)
                try:
                    self._runs = KfpRuns(self.settings.kfp_endpoint,
                                         artifact_root=self.settings.artifact_store,
                                         namespace=self.settings.kfp_namespace,
                                         settings=self.settings)  # fmt: skip
                except (HTTPError, OSError, ApiException) as exc:
                    raise KfpUnavailable(
                        f"KFP API at {self.settings.kfp_endpoint} is unreachable: {exc}"
                    ) from exc
            return self._runs

    # --- serving ---------------------------------------------------------------------------------

    def _serve(self, job: RecommenderJob, *, stable: ModelRecord | None,
               canary: ModelRecord | None, weight: int) -> None:  # fmt: skip
        """Make the cluster serve ``stable`` (and ``canary`` at ``weight``%), nothing else."""
        gateway = self.settings.gateway_ref is not None
        weight = weight if canary is not None else 0
        replicas = manifests.replicas_for(job, weight, gateway)
        if canary is not None:
            self._apply(manifests.deployment(job, "canary", canary, replicas["canary"], weight,
                                             self.settings))  # fmt: skip
        if stable is not None:
            self._apply(manifests.deployment(job, "stable", stable, replicas["stable"], 0,
                                             self.settings))  # fmt: skip
        self._apply(manifests.service(job))
        if gateway:
            for track in manifests.TRACKS:
                self._apply(manifests.track_service(job, track))
            self._apply(manifests.http_route(job, weight, self.settings))
        if canary is None:
            self._delete(
                self.apps.delete_namespaced_deployment,
                manifests.deployment_name(job, "canary"),
                job.metadata.namespace,
            )

    def _deployments(self, job: RecommenderJob) -> dict[Track, Any]:
        listed = self._call(self.apps.list_namespaced_deployment, job.metadata.namespace,
                            label_selector=manifests.selector(job))  # fmt: skip
        found: dict[Track, Any] = {}
        for item in listed.items:
            track = (item.metadata.labels or {}).get(manifests.TRACK_LABEL)
            if track in manifests.TRACKS and item.metadata.deletion_timestamp is None:
                found[track] = item
        return found

    def _apply(self, manifest: dict[str, Any]) -> None:
        """Create, or patch (strategic merge) when the content hash changed; else nothing."""
        kind, meta = manifest["kind"], manifest["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        read, create, patch = self._verbs(kind)
        current = self._call_ignoring_404(read, name, namespace)
        if current is None:
            try:
                self._call(create, namespace, manifest)
                return
            except KubernetesUnavailable as exc:
                if "AlreadyExists" not in str(exc):
                    raise
                current = self._call(read, name, namespace)
        if _annotation(current, manifests.HASH_ANNOTATION) == _hash(manifest):
            return
        self._call(patch, name, namespace, manifest)

    def _verbs(self, kind: str) -> tuple[Any, Any, Any]:
        if kind == "Deployment":
            return (self.apps.read_namespaced_deployment, self.apps.create_namespaced_deployment,
                    self.apps.patch_namespaced_deployment)  # fmt: skip
        if kind == "Service":
            return (self.core.read_namespaced_service, self.core.create_namespaced_service,
                    self.core.patch_namespaced_service)  # fmt: skip
        if kind in ("HTTPRoute", "RayCluster"):
            group, version, plural = {
                "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
                "RayCluster": ("ray.io", "v1", "rayclusters"),
            }[kind]

            def read(name: str, namespace: str) -> Any:
                return self.custom.get_namespaced_custom_object(group, version, namespace,
                                                                plural, name)  # fmt: skip

            def create(namespace: str, body: Any) -> Any:
                return self.custom.create_namespaced_custom_object(group, version, namespace,
                                                                   plural, body)  # fmt: skip

            def patch(name: str, namespace: str, body: Any) -> Any:
                return self.custom.patch_namespaced_custom_object(group, version, namespace,
                                                                  plural, name, body)  # fmt: skip

            return read, create, patch
        raise ValueError(f"the operator does not manage {kind} objects")

    def _delete(self, method: Any, name: str, namespace: str) -> None:
        self._call_ignoring_404(method, name, namespace)

    def _call_ignoring_404(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _translate(exc) from exc
        except Exception as exc:
            raise _translate(exc) from exc

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise _translate(exc) from exc


def _kfp_healthy(endpoint: str, timeout_s: float = 5.0) -> None:
    """One quick health check: ``kfp.Client()`` itself retries for ~25 s before failing."""
    import urllib.error
    import urllib.request

    url = f"{endpoint.rstrip('/')}/apis/v2beta1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code < 500 and exc.code != 429:
            return  # it answers (auth and routing are kfp.Client's business)
        raise KfpUnavailable(f"KFP API at {endpoint} answered {exc.code}") from exc
    except OSError as exc:
        raise KfpUnavailable(f"KFP API at {endpoint} is unreachable: {exc}") from exc


def _translate(exc: Exception) -> Exception:
    """API errors worth retrying become ``KubernetesUnavailable``; anything else stays as is."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        if exc.status is not None and (exc.status >= 500 or exc.status in (409, 429)):
            reason = _reason(exc)
            return KubernetesUnavailable(f"Kubernetes API answered {exc.status} {reason}")
        if exc.status == 404:
            return KubernetesNotFound(f"Kubernetes API answered 404: {_reason(exc)}")
        if exc.status == 403:
            return KubernetesForbidden(f"Kubernetes API answered 403 {_reason(exc)}")
        return KuberecError(f"Kubernetes API refused the request ({exc.status}): {_reason(exc)}")
    if isinstance(exc, HTTPError | OSError):
        return KubernetesUnavailable(f"Kubernetes API is unreachable: {exc}")
    return exc


def _reason(exc: Any) -> str:
    import json

    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    return f"{body.get('reason', exc.reason)}: {body.get('message', '')}".strip(": ")


def _analysis_due(job: RecommenderJob, status: JobStatus, now: datetime) -> bool:
    rollout = status.rollout
    if rollout is None:
        return False
    interval = timedelta(seconds=job.spec.serving.canary.interval_seconds)
    return now >= datetime.fromisoformat(rollout.analysed_at) + interval


def _ref(job: RecommenderJob) -> str:
    return f"{job.metadata.namespace}/{job.metadata.name}"


def _annotations(job: RecommenderJob) -> dict[str, str]:
    extra = job.metadata.model_extra or {}
    return dict(extra.get("annotations") or {})


def _annotation(obj: Any, key: str) -> str | None:
    if obj is None:
        return None
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    annotations = meta.get("annotations") if isinstance(meta, dict) else meta.annotations
    return (annotations or {}).get(key)


def _hash(manifest: dict[str, Any]) -> str | None:
    return manifest["metadata"]["annotations"].get(manifests.HASH_ANNOTATION)


def _version(deployment: Any) -> str | None:
    return _annotation(deployment, manifests.VERSION_ANNOTATION) if deployment else None


def _replicas(deployment: Any) -> int:
    return int(deployment.spec.replicas or 0)


def _ready(deployment: Any) -> bool:
    """Rolled out: the current generation observed, and a ready pod of it (or scaled to zero)."""
    status = deployment.status
    if status is None:
        return False
    current = (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
    if _replicas(deployment) == 0:
        return current
    updated = (status.updated_replicas or 0) >= 1
    return current and updated and (status.ready_replicas or 0) >= 1
