"""kopf handlers: every event of a RecommenderJob runs one pass of the shared reconcile loop.

A pass is ``reconcile_pass.run_pass``, the one the local platform runs too:
observe -> reconcile -> write status ahead of a launch -> execute -> write status,
with this class as its status store. Create, update (of the spec) and resume
(operator start) run a pass at once; a timer repeats it every ``poll_s`` to follow pipeline runs
and to analyse canaries. Delete runs the finalizer: the operator's Deployments,
Services and HTTPRoute go, then kopf releases the object.

Why it never launches twice:

* the run key comes from reconcile (spec hash + data digest); the status naming
  it is written *before* the submission (write-ahead), and KFP submission finds
  an existing run by that key, so a crash between the two is harmless;
* passes of one job are serialised (a lock per job: kopf runs the timer beside
  the change handlers), and the status each pass starts from is the one the
  last pass wrote (kopf's copy may lag behind our own write).

Transient trouble (KFP, Prometheus or the API server unavailable, a 409) is
caught: the job gets the condition ``PlatformAvailable=False`` with the reason
(``KfpUnavailable``, ...) and the next pass waits an exponential backoff.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from kuberec.api.spec import GROUP, VERSION, RecommenderJob
from kuberec.api.status import IN_FLIGHT, Condition, JobStatus
from kuberec.errors import KuberecError
from kuberec.operator.actions import Action, LaunchRun
from kuberec.operator.conditions import condition, with_condition, with_phase
from kuberec.operator.crd import PLURAL
from kuberec.operator.kubernetes.kfp_client import KfpUnavailable
from kuberec.operator.kubernetes.metrics import OperatorMetrics
from kuberec.operator.kubernetes.platform import (
    KubernetesForbidden,
    KubernetesPlatform,
    KubernetesUnavailable,
)
from kuberec.operator.kubernetes.prometheus import PrometheusUnavailable
from kuberec.operator.kubernetes.settings import ClusterSettings
from kuberec.operator.kubernetes.status_writer import StatusWriter
from kuberec.operator.reconcile_pass import AVAILABLE, at_rest, run_pass

FINALIZER = "kuberec.io/finalizer"
WARNING_PHASES = ("Failed", "Rejected")
TRANSIENT: tuple[tuple[type[Exception], str], ...] = (
    (KfpUnavailable, "KfpUnavailable"),
    (PrometheusUnavailable, "PrometheusUnavailable"),
    (KubernetesUnavailable, "KubernetesUnavailable"),
    (KubernetesForbidden, "KubernetesForbidden"),
)

log = logging.getLogger("kuberec.operator")
_OK = Condition(type=AVAILABLE, status="True", reason="Available", last_transition_time="")


@dataclass
class Backoff:
    """Exponential delay per job after consecutive transient failures."""

    first_s: float = 1.0
    max_s: float = 60.0
    _state: dict[str, tuple[int, float]] = field(default_factory=dict)

    def failed(self, uid: str) -> float:
        failures = self._state.get(uid, (0, 0.0))[0] + 1
        delay = min(self.first_s * 2 ** (failures - 1), self.max_s)
        self._state[uid] = (failures, time.monotonic() + delay)
        return delay

    def succeeded(self, uid: str) -> None:
        self._state.pop(uid, None)

    def waiting(self, uid: str) -> bool:
        entry = self._state.get(uid)
        return entry is not None and time.monotonic() < entry[1]

    def failures(self, uid: str) -> int:
        return self._state.get(uid, (0, 0.0))[0]


@dataclass
class Operator:
    """What the handlers share: the platform, the status writer, per-job memory, metrics."""

    platform: KubernetesPlatform
    writer: StatusWriter
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    backoff: Backoff = field(default_factory=Backoff)
    post_event: Callable[..., None] = kopf.event
    resync_s: float = 60.0  # timer passes of a settled job are this far apart
    _last_pass: dict[str, float] = field(default_factory=dict)
    _deleted: set[str] = field(default_factory=set)  # uids are never reused
    _statuses: dict[str, JobStatus] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, uid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def forget(self, uid: str) -> None:
        with self._guard:
            self._locks.pop(uid, None)
            self._statuses.pop(uid, None)
            self._last_pass.pop(uid, None)
        self.backoff.succeeded(uid)
        self.metrics.phase(uid, None)

    # --- one pass --------------------------------------------------------------------------------

    def reconcile(self, body: kopf.Body, trigger: str) -> JobStatus | None:
        """One pass for this object; never raises (a failure becomes a condition and a delay)."""
        uid = str(body.metadata.uid)
        if body.metadata.get("deletionTimestamp"):
            return None
        with self.lock(uid):
            if uid in self._deleted:
                return None  # a pass that queued behind the finalizer must not redeploy
            status = self._statuses.get(uid) or JobStatus.model_validate(body.get("status") or {})
            if trigger == "timer" and (self.backoff.waiting(uid) or self._resting(uid, status)):
                return None
            started = time.perf_counter()
            self._last_pass[uid] = time.monotonic()
            try:
                job = _job(body)
            except ValidationError as exc:
                self._invalid(body, exc)
                return None
            try:
                new = self._pass(job, status)
            except Exception as exc:  # the operator must outlive any one job
                self._failed(job, status, exc, trigger)
                return None
            finally:
                self.metrics.latency.observe(time.perf_counter() - started)
            self.backoff.succeeded(uid)
            self.metrics.reconciles.labels(trigger=trigger, result="ok").inc()
            self.metrics.phase(uid, new.phase)
            return new

    def _resting(self, uid: str, status: JobStatus) -> bool:
        """A settled job needs no pass every few seconds: data and schedule move slowly."""
        settled = at_rest(status)
        healthy = (condition(status, AVAILABLE) or _OK).status == "True"
        last = self._last_pass.get(uid)
        return settled and healthy and last is not None and time.monotonic() - last < self.resync_s

    def _pass(self, job: RecommenderJob, status: JobStatus) -> JobStatus:
        return run_pass(job, status, self.platform, self, on_action=self._count).status

    def _count(self, action: Action) -> None:
        if isinstance(action, LaunchRun):
            self.metrics.launches.inc()

    def write(self, job: RecommenderJob, old: JobStatus, new: JobStatus) -> JobStatus:
        """The status store of a pass: the status subresource, this process's copy, Events."""
        return self._write(job, old, new)

    def _write(self, job: RecommenderJob, old: JobStatus, new: JobStatus) -> JobStatus:
        self.writer.write(job, new)
        self._statuses[str(job.metadata.uid)] = new
        self._events(job, old, new)
        return new

    def _events(self, job: RecommenderJob, old: JobStatus, new: JobStatus) -> None:
        """One Kubernetes Event per phase transition, with the reason reconcile recorded."""
        if old.phase == new.phase or not new.history:
            return
        last = new.history[-1]
        kind = "Warning" if new.phase in WARNING_PHASES else "Normal"
        message = f"{old.phase} -> {new.phase}: {last.message}".rstrip(": ")
        self._post(job, kind, last.reason, message)

    def _failed(self, job: RecommenderJob, status: JobStatus, exc: Exception,
                trigger: str) -> None:  # fmt: skip
        uid = str(job.metadata.uid)
        reason = next((name for kind, name in TRANSIENT if isinstance(exc, kind)), None)
        if reason is None:
            reason = "ReconcileError"
            log.error("reconcile of %s failed:\n%s", _ref(job), traceback.format_exc())
        delay = self.backoff.failed(uid)
        self.metrics.errors.labels(reason=reason).inc()
        self.metrics.reconciles.labels(trigger=trigger, result="error").inc()
        message = f"{exc}; retrying in {delay:.0f}s"
        log.warning("%s: %s: %s", _ref(job), reason, message)
        status = self._statuses.get(uid) or status  # keep a write-ahead of this very pass
        status = _not_submitted(status, f"{reason}: {exc}")
        previous = condition(status, AVAILABLE)
        now = datetime.now(UTC)
        new = with_condition(status, now, AVAILABLE, False, reason, message,
                             job.metadata.generation)  # fmt: skip
        if previous is None or previous.reason != reason:
            self._post(job, "Warning", reason, message)
        try:
            self.writer.write(job, new)
            self._statuses[uid] = new
        except KuberecError as write_error:
            log.warning("%s: could not record %s: %s", _ref(job), reason, write_error)

    def _invalid(self, body: kopf.Body, exc: ValidationError) -> None:
        """A spec the CRD schema let through but the typed model refuses: Failed, with why."""
        from kuberec.api.spec import describe_errors

        message = describe_errors(exc)
        log.error("%s/%s: invalid spec: %s", body.metadata.namespace, body.metadata.name,
                  message)  # fmt: skip
        self.metrics.errors.labels(reason="InvalidSpec").inc()
        status = JobStatus.model_validate(body.get("status") or {})
        last = status.history[-1] if status.history else None
        if status.phase == "Failed" and last is not None and last.reason == "InvalidSpec":
            return
        new = with_phase(status, datetime.now(UTC), "Failed", "InvalidSpec", message)
        stub = RecommenderJob.model_construct(metadata=_meta(body))  # only name/namespace are read
        try:
            self.writer.write(stub, new)  # type: ignore[arg-type]
        except KuberecError as write_error:
            log.warning("could not record InvalidSpec: %s", write_error)
        self._post_body(dict(body), "Warning", "InvalidSpec", message)

    def cleanup(self, body: kopf.Body) -> list[str]:
        """The finalizer: delete what the operator made; raising keeps the finalizer (retry)."""
        uid = str(body.metadata.uid)
        job = _job(body, validate=False)
        run = (body.get("status") or {}).get("pipelineRun") or {}
        running_key = run.get("key") if run.get("state") in IN_FLIGHT else None
        with self.lock(uid):
            self._deleted.add(uid)
            try:
                deleted = self.platform.cleanup(job, running_key)
            except KubernetesUnavailable as exc:
                raise kopf.TemporaryError(f"cleanup: {exc}", delay=2) from exc
        self.forget(uid)
        log.info("%s deleted; removed %s", _ref(job), ", ".join(deleted) or "nothing")
        return deleted

    def _post(self, job: RecommenderJob, kind: str, reason: str, message: str) -> None:
        ref = {"apiVersion": job.api_version, "kind": job.kind,
               "metadata": {"name": job.metadata.name, "namespace": job.metadata.namespace,
                            "uid": job.metadata.uid}}  # fmt: skip
        self._post_body(ref, kind, reason, message)

    def _post_body(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        try:
            self.post_event(body, type=kind, reason=reason, message=message[:1024])
        except Exception as exc:  # an event is a courtesy, never a failure
            log.debug("event not posted: %s", exc)


# --- registration ------------------------------------------------------------------------------


def register(registry: kopf.OperatorRegistry, operator: Operator, *, poll_s: float) -> None:
    """Attach the handlers to ``registry`` (the timer's interval is ``poll_s`` seconds)."""
    resource = (GROUP, VERSION, PLURAL)

    def changed(body: kopf.Body, reason: str, **_: Any) -> None:
        operator.reconcile(body, str(reason))

    def timer(body: kopf.Body, **_: Any) -> None:
        operator.reconcile(body, "timer")

    def deleted(body: kopf.Body, **_: Any) -> None:
        operator.cleanup(body)

    kopf.on.resume(*resource, registry=registry, id="reconcile-resume")(changed)
    kopf.on.create(*resource, registry=registry, id="reconcile-create")(changed)
    kopf.on.update(*resource, registry=registry, id="reconcile-update", field="spec")(changed)
    kopf.timer(*resource, registry=registry, id="poll", interval=poll_s, initial_delay=poll_s,
               sharp=False)(timer)  # fmt: skip
    kopf.on.delete(*resource, registry=registry, id="cleanup")(deleted)


def configure(settings: kopf.OperatorSettings, *, workers: int = 16) -> None:
    """kopf settings: annotations (the status schema is kuberec's), our finalizer, events."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kuberec.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kuberec.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own Events mark phases; kopf's only warn
    settings.execution.max_workers = workers
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    # A timer pass still running when a job is deleted: check again soon (kopf's default, 60 s,
    # holds the finalizer, and so the deletion, that long).
    settings.background.cancellation_polling = 0.5
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


# --- helpers -----------------------------------------------------------------------------------


def _not_submitted(status: JobStatus, why: str) -> JobStatus:
    """A write-ahead run (Pending) whose pass failed says why it is not on the platform yet."""
    run = status.pipeline_run
    if run is None or run.state != "Pending":
        return status
    run = run.model_copy(update={"message": f"not submitted ({why}); retrying"})
    return status.model_copy(update={"pipeline_run": run})


def _job(body: kopf.Body, *, validate: bool = True) -> RecommenderJob:
    raw = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
           "metadata": dict(body.metadata), "spec": dict(body.spec)}  # fmt: skip
    if validate:
        return RecommenderJob.model_validate(raw)
    return RecommenderJob.model_construct(
        api_version=raw["apiVersion"], kind=raw["kind"], metadata=_meta(body), spec=None
    )


def _meta(body: Any) -> Any:
    """The metadata fields the platform reads, from a body the typed model may refuse."""
    from kuberec.api.spec import Metadata

    meta = body["metadata"]
    return Metadata.model_construct(
        name=meta["name"],
        namespace=meta.get("namespace", "default"),
        uid=meta.get("uid"),
        generation=meta.get("generation"),
    )


def _ref(job: RecommenderJob) -> str:
    return f"{job.metadata.namespace}/{job.metadata.name}"


def build_operator(settings: ClusterSettings) -> Operator:
    """The Operator for this process: in-cluster credentials, else the kubeconfig."""
    from kubernetes import client, config

    if "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config()
        api_client = client.ApiClient()
    else:
        api_client = config.new_client_from_config()
    platform = KubernetesPlatform(settings, api_client)
    return Operator(platform=platform, writer=StatusWriter(api_client), resync_s=settings.resync_s)
