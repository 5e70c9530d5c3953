"""What the reconcile function asks the platform to do; the platform makes each idempotent."""

from __future__ import annotations

from dataclasses import dataclass

from kuberec.api.status import ModelRecord


@dataclass(frozen=True)
class LaunchRun:
    """Start a pipeline run; a run with this key that already exists is not started again."""

    key: str
    champion_uri: str
    reason: str


@dataclass(frozen=True)
class DeployStable:
    """Serve ``model`` as the only version (first model, or recovery after a restart)."""

    model: ModelRecord


@dataclass(frozen=True)
class StartCanary:
    model: ModelRecord
    weight: int


@dataclass(frozen=True)
class SetWeight:
    weight: int


@dataclass(frozen=True)
class Promote:
    """The canary becomes the stable version; the old stable version is stopped."""

    model: ModelRecord


@dataclass(frozen=True)
class Rollback:
    """Canary weight to 0 and the canary stopped; the stable version keeps serving."""

    model: ModelRecord


@dataclass(frozen=True)
class PauseServing:
    """``suspend``: keep what serves, stop shifting traffic (weight frozen)."""


Action = LaunchRun | DeployStable | StartCanary | SetWeight | Promote | Rollback | PauseServing
