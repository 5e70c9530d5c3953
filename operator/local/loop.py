"""Drive the reconcile pass on a platform until the job settles (the local operator).

One pass (``operator/reconcile_pass.py``): observe, reconcile, store the status
ahead of a launch, execute the actions, store the status. The Kubernetes
operator runs the same pass from kopf handlers and timers; here a plain loop
repeats it every ``poll_s`` until nothing is in flight, storing the status in
``<workdir>/status.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.errors import KuberecError
from kuberec.operator.local.job_dir import claim
from kuberec.operator.local.store import load_status, save_status, with_generation
from kuberec.operator.reconcile_pass import Platform, ReconcilePass, run_pass, settled


class LoopTimeout(KuberecError):
    """The job did not settle in time."""


@dataclass(frozen=True)
class LocalStatusStore:
    """The status store of the local platform: ``<workdir>/status.json``."""

    workdir: Path

    def write(self, job: RecommenderJob, old: JobStatus, new: JobStatus) -> JobStatus:
        save_status(self.workdir, job, new)
        return new


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
    store = LocalStatusStore(workdir)
    deadline = time.monotonic() + timeout_s
    while True:
        result = run_pass(job, status, platform, store)
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
