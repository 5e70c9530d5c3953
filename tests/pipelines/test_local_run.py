"""The whole job on this machine: the reconcile loop drives kfp.local pipeline runs.

One small synthetic job is trained once per module; later tests change its
spec (a weak model, a hyperparameter the data breaks) and check what the gate and the
status say. Servers are not started here (``serve=False``); serving has its own
tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberec.api.spec import RecommenderJob, load_job
from kuberec.api.status import JobStatus
from kuberec.cli import main
from kuberec.operator.local.loop import run_until_settled
from kuberec.operator.local.platform import LocalPlatform
from kuberec.operator.local.store import load_status
from tests.support.jobs import job_document, write_job

SPEC = {
    "data": {"synthetic": {"users": 150, "items": 80, "interactions": 4000, "seed": 3}},
    "features": {"textEmbeddings": False},
    "evaluation": {"protocol": "temporal", "k": 10},
}


def _job(tmp: Path, **spec_changes: object) -> RecommenderJob:
    return load_job(write_job(tmp / "job.yaml", job_document("tiny", {**SPEC, **spec_changes})))


def _run(job: RecommenderJob, workdir: Path) -> JobStatus:
    platform = LocalPlatform(workdir, base=workdir, serve=False)
    return run_until_settled(job, platform, workdir, poll_s=0.5, timeout_s=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("job")


@pytest.fixture(scope="module")
def first(workdir: Path) -> JobStatus:
    return _run(_job(workdir), workdir)


def test_a_first_run_ends_with_a_packaged_champion(first: JobStatus) -> None:
    assert first.phase == "Serving"
    assert first.champion is not None and first.champion.selection is not None
    assert first.champion.model_type == first.champion.selection.chosen  # model.type auto
    assert Path(first.champion.uri.removeprefix("file://")).exists()
    assert first.gate is not None and first.gate.accepted


def test_the_champion_carries_its_lineage(first: JobStatus) -> None:
    lineage = first.champion.lineage  # type: ignore[union-attr]
    assert lineage.dataset_digest.startswith("sha256:") and lineage.interactions == 4000
    assert lineage.pipeline_run.startswith("tiny-")


def test_every_step_ran_and_left_its_artifacts(first: JobStatus, workdir: Path) -> None:
    roots = list((workdir / "pipeline-root").iterdir())
    steps = {p.name for p in roots[0].iterdir()}
    assert {"ingest", "features", "train", "evaluate", "package"} <= steps
    report = next(roots[0].glob("evaluate/report"))
    assert "challenger accepted" in report.read_text()
    assert "## Model selection (auto)" in report.read_text()


def test_the_same_spec_and_data_train_nothing(first: JobStatus, workdir: Path) -> None:
    again = _run(_job(workdir), workdir)
    assert again.pipeline_run.key == first.pipeline_run.key  # type: ignore[union-attr]
    assert len(list((workdir / "runs").iterdir())) == 1
    assert again.champion == first.champion


def test_a_weak_challenger_is_rejected_and_the_champion_stays(
    first: JobStatus, workdir: Path
) -> None:
    status = _run(_job(workdir, model={"type": "popularity"}), workdir)
    assert status.phase == "Rejected"
    assert status.champion == first.champion
    assert status.challenger is not None and status.challenger.model_type == "popularity"
    assert "does not beat the champion" in " ".join(status.gate.reasons)  # type: ignore[union-attr]


#: Valid as a spec (so it loads), refused by the data: 80 items, above max_items.
BROKEN = {"model": {"type": "ease", "hyperparameters": {"max_items": 10}}}


@pytest.fixture(scope="module")
def failed(first: JobStatus, workdir: Path) -> JobStatus:
    return _run(_job(workdir, **BROKEN), workdir)


def test_a_failing_step_is_named_with_reason_and_log(
    failed: JobStatus, first: JobStatus, workdir: Path
) -> None:
    status = failed
    assert status.phase == "Failed"
    message = status.pipeline_run.message  # type: ignore[union-attr]
    assert message.startswith("step train failed:") and "max_items" in message
    assert "pipeline.log" in message
    assert Path(status.pipeline_run.log).exists()  # type: ignore[union-attr, arg-type]
    assert load_status(workdir).champion == first.champion  # type: ignore[union-attr]


def test_kuberec_run_prints_the_failed_step_and_exits_2(
    failed: JobStatus, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _job(workdir, **BROKEN)  # the same broken spec: nothing is relaunched
    code = main(["run", str(workdir / "job.yaml"), "--workdir", str(workdir), "--no-serve"])
    captured = capsys.readouterr()
    assert code == 2
    assert "step train failed" in " ".join(captured.err.split())
    assert len(list((workdir / "runs").iterdir())) == 3


def test_the_summary_names_the_report_of_the_run_it_shows(first: JobStatus, workdir: Path) -> None:
    from rich.console import Console

    from kuberec.cli.run_summary import summary_table

    console = Console(width=400, record=True)
    console.print(summary_table("tiny", first, workdir))
    earliest = sorted((workdir / "pipeline-root").glob("*/evaluate/report"))[0]  # first run's
    assert str(earliest) in console.export_text()
