"""The canary part of the reconcile loop: start, analyse each interval, promote or roll back.

The analysis and the step machine are ``kuberec.serving.canary.analysis`` and
``.steps`` (pure); this module maps them onto the job's status and the platform actions,
so every decision lands in ``status.rollout.decisions`` with the metric values
that caused it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kuberec.api.spec import CanarySpec, RecommenderJob
from kuberec.api.status import JobStatus, ModelRecord, RolloutDecision, RolloutStatus
from kuberec.operator.actions import Action, Promote, Rollback, SetWeight, StartCanary
from kuberec.operator.conditions import stamp, with_condition, with_phase
from kuberec.operator.observations import Observations
from kuberec.serving.canary.analysis import Thresholds, VersionMetrics
from kuberec.serving.canary.steps import RolloutPolicy, RolloutState, evaluate_interval, start

DECISIONS_KEPT = 20


def policy_of(canary: CanarySpec) -> RolloutPolicy:
    """The step machine's policy, built from ``spec.serving.canary`` (every analysis field is a
    Thresholds field of the same name; one the analysis does not know fails loudly)."""
    thresholds = Thresholds.from_dict(canary.analysis.model_dump())
    return RolloutPolicy(steps=tuple(canary.steps), thresholds=thresholds)


def start_rollout(
    job: RecommenderJob, status: JobStatus, model: ModelRecord, now: datetime
) -> tuple[list[Action], JobStatus]:
    state = start(policy_of(job.spec.serving.canary))
    rollout = RolloutStatus(
        step=state.step, weight=state.weight, started_at=stamp(now),
        window_started_at=stamp(now), analysed_at=stamp(now),
    )  # fmt: skip
    status = status.model_copy(update={"challenger": model, "rollout": rollout})
    status = with_phase(status, now, "RollingOut", "CanaryStarted",
                        f"{model.version} at {state.weight}%")  # fmt: skip
    return [StartCanary(model, state.weight)], status


def reconcile_rollout(
    job: RecommenderJob, status: JobStatus, obs: Observations
) -> tuple[list[Action], JobStatus]:
    rollout, challenger, now = status.rollout, status.challenger, obs.now
    assert rollout is not None and challenger is not None
    if obs.serving.canary != challenger.version:
        return [StartCanary(challenger, rollout.weight)], status  # lost or not up yet
    canary = job.spec.serving.canary
    due = datetime.fromisoformat(rollout.analysed_at) + timedelta(seconds=canary.interval_seconds)
    if now < due:
        return [], status
    policy = policy_of(canary)
    traffic = obs.serving.traffic
    state = RolloutState(
        step=rollout.step, weight=rollout.weight, extensions=rollout.extensions,
        baseline=VersionMetrics.from_dict(rollout.baseline) if rollout.baseline else None,
    )  # fmt: skip
    new, decision = evaluate_interval(
        state, policy, traffic.get("canary", VersionMetrics()),
        traffic.get("stable", VersionMetrics()), now=stamp(now),
    )  # fmt: skip
    record = RolloutDecision.model_validate(decision.to_dict())
    decisions = [*rollout.decisions, record][-DECISIONS_KEPT:]
    if decision.action in ("promote", "rollback"):
        outcome = "Promoted" if decision.action == "promote" else "RolledBack"
        finished = rollout.model_copy(
            update={
                "decisions": decisions,
                "outcome": outcome,
                "weight": new.weight,
                "analysed_at": stamp(now),
            }
        )
        status = status.model_copy(update={"last_rollout": finished})
        if decision.action == "promote":
            return _promoted(job, status, challenger, record, now)
        return _rolled_back(job, status, challenger, record, now)
    window = stamp(now) if decision.action in ("advance", "hold") else rollout.window_started_at
    updated = rollout.model_copy(update={
        "step": new.step, "weight": new.weight, "extensions": new.extensions,
        "window_started_at": window, "analysed_at": stamp(now), "decisions": decisions,
        "baseline": new.baseline.to_dict() if new.baseline else None,
    })  # fmt: skip
    status = status.model_copy(update={"rollout": updated})
    status = with_phase(status, now, "RollingOut", f"Canary{decision.action.capitalize()}",
                        f"{challenger.version} at {new.weight}%")  # fmt: skip
    actions: list[Action] = [SetWeight(new.weight)] if new.weight != rollout.weight else []
    return actions, status


Outcome = tuple[list[Action], JobStatus]


def _promoted(
    job: RecommenderJob, status: JobStatus, model: ModelRecord, record: RolloutDecision,
    now: datetime,
) -> Outcome:  # fmt: skip
    message = f"{model.version} promoted after {record.step + 1} step(s)"
    status = status.model_copy(update={"champion": model, "challenger": None, "rollout": None})
    status = with_condition(status, now, "Promoted", True, "CanaryPassed", message,
                            job.metadata.generation)  # fmt: skip
    status = with_phase(status, now, "Serving", "Promoted", message)
    return [Promote(model)], status


def _rolled_back(
    job: RecommenderJob, status: JobStatus, model: ModelRecord, record: RolloutDecision,
    now: datetime,
) -> Outcome:  # fmt: skip
    reasons = "; ".join(record.reasons) or record.verdict
    message = f"{model.version} rolled back at {record.weight}%: {reasons}"
    status = status.model_copy(update={"rollout": None})
    status = with_condition(status, now, "Promoted", False, "RolledBack", message,
                            job.metadata.generation)  # fmt: skip
    status = with_phase(status, now, "Serving", "RolledBack", message)
    return [Rollback(model)], status
