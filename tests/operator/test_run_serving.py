"""`kuberec run` ends with the model serving, and a second model goes through a canary.

Real processes throughout: kfp.local pipeline runs, `bentoml serve` behind the
canary router, and held-out interactions replayed as traffic for the analysis.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuberec.api.spec import RecommenderJob, load_job
from kuberec.api.status import JobStatus
from kuberec.operator.local.loop import run_until_settled
from kuberec.operator.local.platform import LocalPlatform
from tests.support.jobs import job_document, write_job

SPEC = {
    "data": {"synthetic": {"users": 150, "items": 80, "interactions": 4000, "seed": 5}},
    "features": {"textEmbeddings": False},
    "serving": {"canary": {"steps": [50, 100], "interval": "3s",
                           "analysis": {"minSamples": 5, "maxP95LatencyMs": 5000,
                                        "minClickThroughRatio": 0.0}}},
}  # fmt: skip


def _job(tmp: Path, **changes: object) -> RecommenderJob:
    return load_job(write_job(tmp / "job.yaml", job_document("served", {**SPEC, **changes})))


def _recommend(url: str, user: object) -> dict:
    request = urllib.request.Request(
        f"{url}/recommend", data=json.dumps({"user_id": user, "k": 5}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    workdir = tmp_path_factory.mktemp("served")
    local = LocalPlatform(workdir, base=workdir, serve=True, replay_rate=25)
    yield local
    local.stop_serving()


@pytest.fixture(scope="module")
def first(platform: LocalPlatform) -> JobStatus:
    job = _job(platform.workdir)
    return run_until_settled(job, platform, platform.workdir, poll_s=0.5, timeout_s=600)


@pytest.fixture(scope="module")
def second(platform: LocalPlatform, first: JobStatus) -> JobStatus:
    job = _job(platform.workdir, model={"type": "ease"},
               evaluation={"gates": {"minImprovement": -1.0, "allowRegression": True}})  # fmt: skip
    return run_until_settled(job, platform, platform.workdir, poll_s=0.5, timeout_s=600)


def test_the_first_model_ends_up_serving_at_the_status_url(first: JobStatus) -> None:
    assert first.phase == "Serving" and first.url
    answer = _recommend(first.url, 1)
    assert answer["model_version"] == first.champion.version  # type: ignore[union-attr]
    assert len(answer["items"]) == 5


def test_an_accepted_challenger_walks_the_canary_steps(second: JobStatus) -> None:
    finished = second.last_rollout
    assert finished is not None and finished.outcome in ("Promoted", "RolledBack")
    assert finished.decisions, "every interval's decision is recorded"
    assert all("canary_requests" in d.values for d in finished.decisions)
    assert second.phase == "Serving"


def test_after_the_canary_one_version_serves_every_user(second: JobStatus) -> None:
    versions = {_recommend(second.url, user)["model_version"] for user in range(1, 30)}  # type: ignore[arg-type]
    assert versions == {second.champion.version}  # type: ignore[union-attr]
