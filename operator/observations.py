"""What the platform saw this pass: the inputs of the pure reconcile function besides the job."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kuberec.serving.canary.analysis import VersionMetrics


@dataclass(frozen=True)
class DataObservation:
    digest: str
    interactions: int


@dataclass(frozen=True)
class RunObservation:
    """A pipeline run the platform knows, by the key it was launched with."""

    key: str
    id: str
    state: Literal["Running", "Succeeded", "Failed"]
    step: str | None = None
    message: str | None = None
    log: str | None = None
    result: dict[str, Any] | None = None  # the package step's result, once succeeded


@dataclass(frozen=True)
class ServingObservation:
    enabled: bool  # False: this platform runs no servers (the job ends at a packaged model)
    stable: str | None = None  # version serving most traffic
    canary: str | None = None
    weight: int = 0  # percent of traffic on the canary
    url: str | None = None
    healthy: bool = True
    # measured since status.rollout.windowStartedAt, per version
    traffic: dict[str, VersionMetrics] = field(default_factory=dict)  # "stable", "canary"


@dataclass(frozen=True)
class Observations:
    now: datetime
    data: DataObservation | None = None
    run: RunObservation | None = None
    serving: ServingObservation = field(default_factory=lambda: ServingObservation(False))
