"""One reconcile pass, the same on both platforms: observe, reconcile, write ahead, act, recover.

``reconcile`` (pure) decides; this module runs its decision against a platform
(:class:`Platform`: ``observe`` and ``execute``) and a :class:`StatusStore`
(``status.json`` locally, the status subresource on Kubernetes). The order is
what makes a crash harmless anywhere: a status that names a new run key is
stored *before* the run is launched (write-ahead), and a launch finds an
existing run by that key; the rest of the new status is stored after the
actions. A pass that follows a failed one marks the platform available again
(``PlatformAvailable=True``): recovery is recorded in the status it writes.

``operator/local/loop.py`` repeats passes until a job settles (``kuberec run``);
``operator/kubernetes/kopf_handlers.py`` runs one per kopf event or timer tick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.operator.actions import Action, LaunchRun
from kuberec.operator.conditions import condition, with_condition
from kuberec.operator.observations import Observations
from kuberec.operator.reconcile import reconcile

#: Phases in which a job waits for nothing (no run, no rollout in flight).
SETTLED = ("Serving", "Rejected", "Failed", "Suspended")
#: The condition a pass that failed on the platform sets to False, and a later one to True.
AVAILABLE = "PlatformAvailable"


class Platform(Protocol):
    def observe(self, job: RecommenderJob, status: JobStatus) -> Observations: ...

    def execute(self, job: RecommenderJob, action: Action) -> None: ...


class StatusStore(Protocol):
    def write(self, job: RecommenderJob, old: JobStatus, new: JobStatus) -> JobStatus:
        """Store ``new`` (which replaces ``old``) as the job's status; returns what is stored."""
        ...


@dataclass(frozen=True)
class ReconcilePass:
    status: JobStatus
    actions: list[Action]
    observations: Observations


def run_pass(
    job: RecommenderJob,
    status: JobStatus,
    platform: Platform,
    store: StatusStore,
    *,
    on_action: Callable[[Action], None] | None = None,
) -> ReconcilePass:
    """One pass from ``status``, the status last stored; the new one is stored when it changed."""
    job = job.model_copy(update={"status": status})
    observations = platform.observe(job, status)
    actions, new = reconcile(job, observations)
    new = recovered(new, observations.now)
    written = status
    if any(isinstance(a, LaunchRun) for a in actions) and new != written:
        written = store.write(job, status, new)  # write-ahead: the run key before the run
    for action in actions:
        platform.execute(job, action)
        if on_action is not None:
            on_action(action)
    if new != written:
        store.write(job, written, new)
    return ReconcilePass(new, actions, observations)


def at_rest(status: JobStatus) -> bool:
    """Nothing in flight and a settled phase: only new data, a schedule or a spec moves it."""
    return status.phase in SETTLED and not status.run_in_flight and status.rollout is None


def settled(result: ReconcilePass) -> bool:
    """The pass did nothing and left the job at rest."""
    return not result.actions and at_rest(result.status)


def recovered(status: JobStatus, now: datetime) -> JobStatus:
    """``PlatformAvailable`` back to True once a pass got through after a failed one."""
    previous = condition(status, AVAILABLE)
    if previous is None or previous.status == "True":
        return status
    return with_condition(status, now, AVAILABLE, True, "Available", "the platform answers again")
