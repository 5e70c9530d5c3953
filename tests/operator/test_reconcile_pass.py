"""One reconcile pass, shared by the local and the Kubernetes operator: write-ahead and recovery."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.operator.actions import Action, LaunchRun
from kuberec.operator.conditions import condition, with_condition
from kuberec.operator.local.loop import LocalStatusStore
from kuberec.operator.local.store import load_status
from kuberec.operator.observations import DataObservation, Observations
from kuberec.operator.reconcile_pass import AVAILABLE, run_pass, settled

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _job() -> RecommenderJob:
    return RecommenderJob.model_validate({
        "apiVersion": "kuberec.io/v1alpha1", "kind": "RecommenderJob",
        "metadata": {"name": "demo", "generation": 1},
        "spec": {"data": {"movielens": "ml-100k"}},
    })  # fmt: skip


class Platform:
    """Sees the same data every pass; on each action records the status stored at that moment."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stored_at_action: list[tuple[Action, JobStatus | None]] = []

    def observe(self, job: RecommenderJob, status: JobStatus) -> Observations:
        return Observations(now=NOW, data=DataObservation("sha256:aaa", 1000))

    def execute(self, job: RecommenderJob, action: Action) -> None:
        self.stored_at_action.append((action, load_status(self.workdir)))


def test_the_status_naming_a_run_is_stored_before_the_run_is_launched(tmp_path: Path) -> None:
    platform = Platform(tmp_path)
    result = run_pass(_job(), JobStatus(), platform, LocalStatusStore(tmp_path))
    [(action, stored)] = platform.stored_at_action
    assert isinstance(action, LaunchRun)
    assert stored is not None and stored.pipeline_run is not None
    assert stored.pipeline_run.key == action.key
    assert load_status(tmp_path) == result.status
    assert not settled(result)


def test_a_pass_after_a_failed_one_marks_the_platform_available_again(tmp_path: Path) -> None:
    failed = with_condition(JobStatus(), NOW, AVAILABLE, False, "KfpUnavailable", "down", 1)
    result = run_pass(_job(), failed, Platform(tmp_path), LocalStatusStore(tmp_path))
    available = condition(result.status, AVAILABLE)
    assert available is not None and available.status == "True"
    stored = load_status(tmp_path)
    assert stored is not None and condition(stored, AVAILABLE) == available
