"""The rollout state machine: from one interval's verdict to the next traffic weight.

The operator's reconcile loop (on Kubernetes and on the local platform) and
:meth:`~kuberec.serving.canary.local.LocalRollout.drive` call
:func:`evaluate_interval` once per analysis interval: :func:`.analysis.analyse`
gives the verdict, :func:`next_step` the new state and the record of what was
decided (:meth:`StepDecision.to_dict`, the shape of
``status.rollout.decisions[]``). Pure: no clock, socket or file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from itertools import pairwise
from typing import Any, Literal

from kuberec.errors import ConfigError
from kuberec.serving.canary.analysis import (
    Breach,
    Pass,
    Thresholds,
    Verdict,
    VersionMetrics,
    analyse,
)

#: What one interval's decision does to the canary.
StepAction = Literal["advance", "promote", "hold", "extend", "rollback"]
#: Where a rollout stands (the job's phase is :data:`kuberec.api.status.Phase`).
RolloutPhase = Literal["Progressing", "Promoted", "RolledBack"]


@dataclass(frozen=True)
class RolloutPolicy:
    """``spec.serving.canary``: the weights to walk through and the analysis thresholds."""

    steps: tuple[int, ...] = (10, 25, 50, 100)
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_extensions: int = 3

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not steps or any(not isinstance(s, int) or not 1 <= s <= 100 for s in steps):
            raise ConfigError(f"canary steps must be percentages within 1..100, got {steps}")
        if any(b <= a for a, b in pairwise(steps)):
            raise ConfigError(f"canary steps must be strictly increasing, got {list(steps)}")
        object.__setattr__(self, "steps", steps)


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands; everything :func:`next_step` needs to remember between intervals."""

    phase: RolloutPhase = "Progressing"
    step: int = 0
    weight: int = 0
    extensions: int = 0
    baseline: VersionMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["baseline"] = self.baseline.to_dict() if self.baseline else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        baseline = data.get("baseline")
        return cls(
            phase=data.get("phase", "Progressing"),
            step=int(data.get("step", 0)),
            weight=int(data.get("weight", 0)),
            extensions=int(data.get("extensions", 0)),
            baseline=VersionMetrics.from_dict(baseline) if baseline else None,
        )


@dataclass(frozen=True)
class StepDecision:
    """One interval's record: the weight analysed, the verdict, what was done and why."""

    time: str
    step: int
    weight: int
    verdict: Verdict
    action: StepAction
    next_weight: int
    reasons: tuple[str, ...] = ()

    @property
    def values(self) -> dict[str, float]:
        return dict(self.verdict.values)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the fields of ``status.rollout.decisions[]`` (RolloutDecision)."""
        return {
            "time": self.time,
            "step": self.step,
            "weight": self.weight,
            "verdict": self.verdict.kind,
            "action": self.action,
            "reasons": list(self.reasons),
            "values": self.values,
        }


def start(policy: RolloutPolicy) -> RolloutState:
    """A new rollout: the first step's weight on the canary."""
    return RolloutState(phase="Progressing", step=0, weight=policy.steps[0])


def next_step(
    state: RolloutState, verdict: Verdict, policy: RolloutPolicy, *, now: datetime | str
) -> tuple[RolloutState, StepDecision]:
    """The state after one analysed interval, and the record of the decision."""
    if state.phase != "Progressing":
        raise ConfigError(f"the rollout is already {state.phase}; start a new one")
    baseline = state.baseline
    stable_requests = int(verdict.values.get("stable_requests", 0))
    if stable_requests >= max(policy.thresholds.min_samples, 1):
        baseline = _stable_of(verdict.values)
    reasons = tuple(str(r) for r in verdict.reasons) if not isinstance(verdict, Pass) else ()
    action: StepAction
    if isinstance(verdict, Pass):
        last = state.step >= len(policy.steps) - 1
        if last:
            new, action = replace(state, phase="Promoted", weight=100, extensions=0), "promote"
        else:
            new = replace(state, step=state.step + 1, weight=policy.steps[state.step + 1],
                          extensions=0)  # fmt: skip
            action = "advance"
    elif isinstance(verdict, Breach):
        new, action = replace(state, phase="RolledBack", weight=0, extensions=0), "rollback"
    elif verdict.action == "Hold":
        new, action = replace(state, extensions=0), "hold"
    elif verdict.action == "Extend" and state.extensions < policy.max_extensions:
        new, action = replace(state, extensions=state.extensions + 1), "extend"
    else:
        if verdict.action == "Extend":
            reasons += (f"still insufficient after {policy.max_extensions} extension(s)",)
        new, action = replace(state, phase="RolledBack", weight=0, extensions=0), "rollback"
    new = replace(new, baseline=baseline)
    time = now if isinstance(now, str) else now.isoformat()
    decision = StepDecision(time, state.step, state.weight, verdict, action, new.weight, reasons)
    return new, decision


def evaluate_interval(
    state: RolloutState,
    policy: RolloutPolicy,
    canary: VersionMetrics,
    stable: VersionMetrics,
    *,
    now: datetime | str,
) -> tuple[RolloutState, StepDecision]:
    """:func:`analyse` then :func:`next_step`: one interval of a rollout."""
    verdict = analyse(canary, stable, policy.thresholds, baseline=state.baseline)
    return next_step(state, verdict, policy, now=now)


def _stable_of(values: dict[str, float]) -> VersionMetrics:
    p95 = values.get("stable_latency_p95_ms")
    return VersionMetrics(
        requests=int(values.get("stable_requests", 0)),
        errors=int(values.get("stable_errors", 0)),
        latency_p95_ms=p95,
        impressions=int(values.get("stable_impressions", 0)),
        clicks=int(values.get("stable_clicks", 0)),
    )
