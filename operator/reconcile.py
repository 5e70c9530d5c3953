"""The control loop's core: (job, observations) -> (actions, new status). Pure: no I/O, no clock.

Both platforms call this same function: the local one from ``kuberec run``,
the Kubernetes one from the kopf operator. Everything it must remember lives in
the returned status, so a restarted operator resumes where it stopped, and the
run key (spec hash + data digest) makes a relaunch of the same work impossible.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from croniter import croniter

from kuberec.api.spec import RecommenderJob, spec_hash
from kuberec.api.status import (
    GateDecision,
    JobStatus,
    ModelRecord,
    PipelineRunStatus,
)
from kuberec.operator.actions import (
    Action,
    DeployStable,
    LaunchRun,
    PauseServing,
)
from kuberec.operator.conditions import stamp, with_condition, with_phase
from kuberec.operator.observations import Observations, RunObservation
from kuberec.operator.rollout import reconcile_rollout, start_rollout

EVALUATING_STEPS = ("evaluate", "package")


def reconcile(job: RecommenderJob, obs: Observations) -> tuple[list[Action], JobStatus]:
    status = job.status or JobStatus()
    generation = job.metadata.generation
    status = status.model_copy(update={"observed_generation": generation})
    now = obs.now
    if job.spec.suspend:
        status = with_phase(status, now, "Suspended", "SuspendRequested", "spec.suspend is true")
        return ([PauseServing()] if status.rollout else []), status
    if status.run_in_flight:
        actions, status = _follow_run(job, status, obs)
        if actions or status.run_in_flight or status.rollout is not None:
            return actions, status
        # Judged and not rolled out (rejected, failed): serving is reconciled in the same pass,
        # so a job that settles here never shows an address that nothing serves.
        return _keep_serving(job, status, obs)
    if status.rollout is not None:
        return reconcile_rollout(job, status, obs)
    trigger = training_trigger(job, status, obs)
    if trigger is not None:
        launched = _launch(job, status, obs, trigger)
        if launched is not None:
            return launched
    return _keep_serving(job, status, obs)


def run_key(job: RecommenderJob, obs: Observations, trigger: str) -> str:
    """Same spec and same data -> same key; a scheduled retrain adds its time slot."""
    digest = obs.data.digest if obs.data else "unobserved"
    slot = stamp(obs.now)[:16] if trigger.startswith("schedule") else ""
    text = f"{job.metadata.namespace}/{job.metadata.name}|{spec_hash(job.spec)}|{digest}|{slot}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def training_trigger(job: RecommenderJob, status: JobStatus, obs: Observations) -> str | None:
    """Why a new model is needed now, or None: the spec, the data or the schedule moved on."""
    latest = status.challenger or status.champion
    if latest is None:
        return "initial training"
    if latest.lineage.spec_hash != spec_hash(job.spec):
        return "spec changed"
    if obs.data is not None and obs.data.digest != latest.lineage.dataset_digest:
        new = obs.data.interactions - latest.lineage.interactions
        minimum = job.spec.training.retrain_on.min_new_interactions
        if minimum is None or new >= minimum:
            return f"new data ({new:+,} interactions)"
    schedule = job.spec.training.schedule
    if schedule and status.last_trained_at:
        due = croniter(schedule, datetime.fromisoformat(status.last_trained_at)).get_next(datetime)
        if due <= obs.now:
            return f"schedule {schedule!r} (due {stamp(due)})"
    return None


def _launch(
    job: RecommenderJob, status: JobStatus, obs: Observations, trigger: str
) -> tuple[list[Action], JobStatus] | None:
    key = run_key(job, obs, trigger)
    previous = status.pipeline_run
    if previous is not None and previous.key == key:
        return None  # this exact work already ran (and failed or was judged): never twice
    now = obs.now
    run = PipelineRunStatus(id=key, key=key, state="Pending", message="submitting",
                            started_at=stamp(now))  # fmt: skip
    status = status.model_copy(update={"pipeline_run": run, "gate": None})
    status = with_condition(status, now, "Trained", None, "RunLaunched", trigger,
                            job.metadata.generation)  # fmt: skip
    status = with_phase(status, now, "Training", "RunLaunched", trigger)
    champion_uri = status.champion.uri if status.champion else ""
    return [LaunchRun(key=key, champion_uri=champion_uri, reason=trigger)], status


def _follow_run(
    job: RecommenderJob, status: JobStatus, obs: Observations
) -> tuple[list[Action], JobStatus]:
    run = status.pipeline_run
    assert run is not None
    seen = obs.run if obs.run is not None and obs.run.key == run.key else None
    now = obs.now
    if seen is None:
        # Launched but not visible yet (or the platform lost it): launching again is
        # idempotent by key, so ask for it; the platform returns the existing run.
        champion_uri = status.champion.uri if status.champion else ""
        if run.state == "Pending":
            status = status.model_copy(
                update={"pipeline_run": run.model_copy(update={"message": "submitting"})}
            )
        return [LaunchRun(run.key, champion_uri, "run not found; relaunching by key")], status
    # Seen on the platform: submitted (Pending -> Running); a finished run is judged below.
    updated = run.model_copy(update={"id": seen.id, "step": seen.step, "log": seen.log,
                                     "state": "Running", "message": None})  # fmt: skip
    status = status.model_copy(update={"pipeline_run": updated})
    if seen.state == "Running":
        phase = "Evaluating" if seen.step in EVALUATING_STEPS else "Training"
        step = f"step {seen.step or 'pending'}"
        return [], with_phase(status, now, phase, "RunProgressing", step)
    if seen.state == "Failed":
        return [], _failed(job, status, seen, now)
    return _judged(job, status, seen, obs)


def _failed(job: RecommenderJob, status: JobStatus, seen: RunObservation, now: datetime
            ) -> JobStatus:  # fmt: skip
    message = f"step {seen.step or '?'} failed: {seen.message or 'no reason given'}"
    if seen.log:
        message += f" (log: {seen.log})"
    run = status.pipeline_run.model_copy(  # type: ignore[union-attr]
        update={"state": "Failed", "message": message, "finished_at": stamp(now)}
    )
    status = status.model_copy(update={"pipeline_run": run})
    status = with_condition(status, now, "Trained", False, "StepFailed", message,
                            job.metadata.generation)  # fmt: skip
    return with_phase(status, now, "Failed", "StepFailed", message)


def _judged(
    job: RecommenderJob, status: JobStatus, seen: RunObservation, obs: Observations
) -> tuple[list[Action], JobStatus]:
    now = obs.now
    result = seen.result or {}
    model = ModelRecord.model_validate(
        {**result["model"], "metrics": _status_metrics(result["model"]["metrics"])}
    )
    decision = result["decision"]
    gate = GateDecision(
        accepted=decision["accepted"], reasons=decision["reasons"], metric=decision["metric"],
        challenger=decision["challenger"], champion=decision.get("champion"),
    )  # fmt: skip
    run = status.pipeline_run.model_copy(  # type: ignore[union-attr]
        update={"state": "Succeeded", "finished_at": stamp(now), "step": None}
    )
    status = status.model_copy(
        update={"pipeline_run": run, "gate": gate, "last_trained_at": stamp(now)}
    )
    generation = job.metadata.generation
    status = with_condition(status, now, "Trained", True, "RunSucceeded", model.version, generation)
    summary = "; ".join(gate.reasons)
    if not gate.accepted:
        status = status.model_copy(update={"challenger": model})
        status = with_condition(status, now, "Evaluated", False, "GateRejected", summary,
                                generation)  # fmt: skip
        return [], with_phase(status, now, "Rejected", "GateRejected", summary)
    status = with_condition(status, now, "Evaluated", True, "GatePassed", summary, generation)
    if status.champion is None or not obs.serving.enabled:
        return _first_model(status, model, now)  # nothing to canary against
    return start_rollout(job, status, model, now)


def _first_model(status: JobStatus, model: ModelRecord, now: datetime
                 ) -> tuple[list[Action], JobStatus]:  # fmt: skip
    status = status.model_copy(update={"champion": model, "challenger": None, "rollout": None})
    status = with_condition(status, now, "Promoted", True, "FirstModel", model.version)
    status = with_phase(status, now, "RollingOut", "Deploying", model.version)
    return [DeployStable(model)], status


def _keep_serving(
    job: RecommenderJob, status: JobStatus, obs: Observations
) -> tuple[list[Action], JobStatus]:
    """Steady state: the champion is served (redeployed if its server went away)."""
    now = obs.now
    serving = obs.serving
    champion = status.champion
    if champion is None:
        return [], status
    held = status.phase in ("Failed", "Rejected")  # keep showing why; the champion still serves
    if not serving.enabled:
        status = status.model_copy(update={"url": None})  # nothing serves: show no address
        if held:
            return [], status
        where = f"{champion.version} at {champion.uri} (no serving platform)"
        status = with_condition(status, now, "Ready", True, "ModelPackaged", where)
        return [], with_phase(status, now, "Serving", "ModelReady", champion.version)
    if serving.stable != champion.version or not serving.healthy:
        status = with_condition(status, now, "Ready", False, "Deploying", champion.version)
        if held:
            return [DeployStable(champion)], status
        return [DeployStable(champion)], with_phase(status, now, "RollingOut", "Deploying",
                                                     champion.version)  # fmt: skip
    status = status.model_copy(update={"url": serving.url})
    if held:
        return [], with_condition(status, now, "Ready", True, "Serving", champion.version)
    status = with_condition(status, now, "Ready", True, "Serving",
                            f"{champion.version} at {serving.url}")  # fmt: skip
    return [], with_phase(status, now, "Serving", "Serving", champion.version)


def _status_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``ndcg@10`` -> ``ndcgAt10``: status keys kubectl's JSONPath can address."""
    return {name.replace("@", "At"): value for name, value in metrics.items()}
