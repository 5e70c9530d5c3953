"""Drive the reconcile function on a platform until the job settles (the local operator).

One pass: observe, reconcile, execute the actions, store the status. The
Kubernetes operator runs the same pass from kopf handlers and timers; here a
plain loop repeats it every ``poll_s`` until nothing is in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kuberec.errors import KuberecError
from kuberec.operator.actions import Action
from kuberec.operator.job_dir import claim
from kuberec.operator.local_store import load_status, save_status, with_generation
from kuberec.operator.observations import Observations
from kuberec.operator.reconcile import reconcile
from kuberec.operator.spec import RecommenderJob
from kuberec.operator.status import JobStatus

SETTLED = ("Serving", "Rejected", "Failed", "Suspended")


class Platform(Protocol):
    def observe(self, job: RecommenderJob, status: JobStatus) -> Observations: ...

    def execute(self, job: RecommenderJob, action: Action) -> None: ...


class LoopTimeout(KuberecError):
    """The job did not settle in time."""


@dataclass(frozen=True)
class ReconcilePass:
    status: JobStatus
    actions: list[Action]
    observations: Observations


def reconcile_once(job: RecommenderJob, status: JobStatus, platform: Platform) -> ReconcilePass:
    job = job.model_copy(update={"status": status})
    observations = platform.observe(job, status)
    actions, new_status = reconcile(job, observations)
    for action in actions:
        platform.execute(job, action)
    return ReconcilePass(new_status, actions, observations)


def settled(result: ReconcilePass) -> bool:
    status = result.status
    return (
        not result.actions
        and not status.run_in_flight
        and status.rollout is None
        and status.phase in SETTLED
    )


def run_until_settled(
    job: RecommenderJob,
    platform: Platform,
    workdir: Path,
    *,
    poll_s: float = 1.0,
    timeout_s: float = 3600.0,
    on_pass: Callable[[ReconcilePass], None] | None = None,
    wait_s: float = 0.0,
) -> JobStatus:
    """Reconcile until settled; the status is saved after every pass (a crash loses nothing).

    The job directory is held for the whole loop (``job_dir.claim``): a second
    loop on it waits up to ``wait_s`` for the first, then refuses.
    """
    with claim(workdir, job, wait_s=wait_s):
        return _settle(job, platform, workdir, poll_s, timeout_s, on_pass)


def _settle(
    job: RecommenderJob, platform: Platform, workdir: Path, poll_s: float, timeout_s: float,
    on_pass: Callable[[ReconcilePass], None] | None,
) -> JobStatus:  # fmt: skip
    job = with_generation(workdir, job)
    status = load_status(workdir) or JobStatus()
    deadline = time.monotonic() + timeout_s
    while True:
        result = reconcile_once(job, status, platform)
        if result.status != status:
            save_status(workdir, job, result.status)
        status = result.status
        if on_pass is not None:
            on_pass(result)
        if settled(result):
            return status
        if time.monotonic() > deadline:
            raise LoopTimeout(
                f"{job.metadata.name} did not settle within {timeout_s:.0f}s "
                f"(phase {status.phase}); `kuberec run` again resumes it"
            )
        if not result.actions:
            time.sleep(poll_s)
