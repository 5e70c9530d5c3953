"""The status of a ``RecommenderJob``: what the reconcile loop knows and shows.

The loop is a pure function of spec, status and observations, so everything it
must remember between passes (the run it launched, the champion, the canary's
step) lives here and survives operator restarts (on Kubernetes in the status
subresource, locally in ``<workdir>/status.json``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kuberec.api.camel import CamelModel

Phase = Literal[
    "Pending", "Training", "Evaluating", "Rejected", "RollingOut", "Serving", "Failed",
    "Suspended",
]  # fmt: skip
PHASES: tuple[str, ...] = Phase.__args__  # type: ignore[attr-defined]
#: Pending: recorded before its submission (write-ahead), not yet seen on the platform.
RunState = Literal["Pending", "Running", "Succeeded", "Failed"]
IN_FLIGHT: tuple[str, ...] = ("Pending", "Running")
HISTORY_LENGTH = 20


class Condition(CamelModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class Lineage(CamelModel):
    """Where a model came from: enough to tell whether it is stale and to reproduce it."""

    spec_hash: str
    dataset_digest: str
    interactions: int = Field(ge=0)
    pipeline_run: str
    code_version: str
    trained_at: str


CandidateStatus = Literal["chosen", "trained", "skipped", "failed"]


# components/train/auto.py builds these rows itself: the selection table, metrics.json and
# the job status hold one record type (the docstring is the CRD's description).
class CandidateRecord(CamelModel):
    """One model type ``auto`` considered: its validation metrics, cost, or why it was skipped."""

    model_type: str
    status: CandidateStatus
    reason: str = ""
    validation: dict[str, float] = Field(default_factory=dict)
    estimated_seconds: float = 0.0
    estimated_memory_mb: float = 0.0
    fit_seconds: float | None = None
    peak_memory_mb: float | None = None


class SelectionRecord(CamelModel):
    """What ``model.type: auto`` tried, and the type it chose (by the validation metric)."""

    chosen: str
    metric: str
    candidates: list[CandidateRecord]


class ModelRecord(CamelModel):
    """A packaged model: the champion (serving) or a challenger (candidate)."""

    version: str  # BentoML tag
    uri: str  # exported artifact
    model_type: str
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: Lineage
    selection: SelectionRecord | None = None  # set when the job's model type is auto


class GateDecision(CamelModel):
    accepted: bool
    reasons: list[str]
    metric: str
    challenger: float
    champion: float | None = None


class PipelineRunStatus(CamelModel):
    id: str
    key: str
    state: RunState
    step: str | None = None
    message: str | None = None
    log: str | None = None
    started_at: str
    finished_at: str | None = None


class RolloutDecision(CamelModel):
    time: str
    step: int
    weight: int
    verdict: str
    action: str
    reasons: list[str] = Field(default_factory=list)
    values: dict[str, float] = Field(default_factory=dict)


class RolloutStatus(CamelModel):
    step: int = Field(0, ge=0)  # index into spec.serving.canary.steps
    weight: int = Field(0, ge=0, le=100)  # percent of traffic on the challenger
    extensions: int = Field(0, ge=0)
    started_at: str
    window_started_at: str  # traffic since then is what the next analysis measures
    analysed_at: str  # the next analysis is due one interval after this
    baseline: dict[str, float | None] | None = None  # the stable version's last full interval
    decisions: list[RolloutDecision] = Field(default_factory=list)
    outcome: Literal["Progressing", "Promoted", "RolledBack"] = "Progressing"


class HistoryEntry(CamelModel):
    time: str
    phase: Phase
    reason: str
    message: str = ""


class JobStatus(CamelModel):
    phase: Phase = "Pending"
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    champion: ModelRecord | None = None
    challenger: ModelRecord | None = None
    gate: GateDecision | None = None
    pipeline_run: PipelineRunStatus | None = None
    rollout: RolloutStatus | None = None  # the canary in progress
    last_rollout: RolloutStatus | None = None  # the finished one, with every decision
    url: str | None = None
    last_trained_at: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)

    @property
    def run_in_flight(self) -> bool:
        """A pipeline run was launched and has not finished (submitted or about to be)."""
        return self.pipeline_run is not None and self.pipeline_run.state in IN_FLIGHT
